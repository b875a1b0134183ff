"""`listwise extract` and `listwise settle`."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from tests.extracts.conftest import LAST_DAY, PERIOD_START, SECRET


@pytest.fixture
def env(chain, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray listwise.toml
    monkeypatch.setenv("LISTWISE_SECRET", SECRET)
    monkeypatch.setenv("LISTWISE_DATABASE_URL", chain["url"])
    return chain


def test_extract_and_settle_write_their_files(env, tmp_path, capsys):
    out = tmp_path / "M1"
    period = ["--from", PERIOD_START.isoformat(), "--to", LAST_DAY.isoformat(), "--out", str(out)]
    assert main(["-q", "extract", "--manufacturer", "M1", *period, "--panel"]) == 0
    assert main(["-q", "settle", "--manufacturer", "M1", *period]) == 0
    printed = capsys.readouterr().out
    assert "offer_results.parquet" in printed and "redemptions" in printed
    assert json.loads((out / "settlement.json").read_text())["amount_due_cents"] == env["truth"]["due"]["M1"]
    assert (out / "household_panel.parquet").exists() and (out / "settlement.pdf").exists()


def test_unknown_manufacturer_is_one_line_and_exit_1(env, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "settle",
                "--manufacturer",
                "NOPE",
                "--from",
                "2025-03-01",
                "--to",
                "2025-03-02",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'NOPE'" in err


def test_reversed_period_is_refused(env, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "extract",
                "--manufacturer",
                "M1",
                "--from",
                "2025-03-10",
                "--to",
                "2025-03-01",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert "after" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["extract", "settle"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"example: listwise {command}" in capsys.readouterr().out
