"""`listwise demo --dir X` never deletes what it did not make (issue 13, item 8)."""

from __future__ import annotations

import pytest

from engine import demo
from engine.cli import main


def _fake_demo(directory, *_args):
    """What a demo makes, in miniature: the database, its data folder, a batch folder, an extract."""
    (directory / "listwise.db").write_text("db")
    (directory / "data").mkdir()
    (directory / "data" / "stores.csv").write_text("store_id\n")
    (directory / "batches").mkdir()
    (directory / "extract-M1").mkdir()
    yield "made"


def test_a_non_empty_directory_that_no_demo_made_is_refused_untouched(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    assert main(["demo", "--dir", str(tmp_path), "--customers", "50", "--weeks", "4"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_rerun_replaces_only_what_the_demo_made(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_run_demo", _fake_demo)
    target = tmp_path / "demo"
    assert list(demo.run_demo(target)) == ["made"]
    (target / "notes.txt").write_text("mine")  # the user's file, added later
    (target / "data" / "extra.csv").write_text("x")  # inside what the demo made: goes with it
    assert list(demo.run_demo(target)) == ["made"]
    assert (target / "notes.txt").read_text() == "mine"
    assert not (target / "data" / "extra.csv").exists() and (target / "data" / "stores.csv").exists()
    made = set((target / demo.MARKER).read_text().split())
    assert {"listwise.db", "data", "batches", "extract-M1"} <= made and "notes.txt" not in made


def test_an_empty_or_new_directory_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "_run_demo", _fake_demo)
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert list(demo.run_demo(target)) == ["made"] and (target / "listwise.db").exists()


def test_a_file_in_the_place_of_the_directory_is_refused(tmp_path):
    (tmp_path / "x").write_text("a file")
    with pytest.raises(Exception, match="not a directory"):
        list(demo.run_demo(tmp_path / "x"))
