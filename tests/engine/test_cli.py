"""The command line: help everywhere, errors as one stderr line per problem and exit 1."""

import pytest

from engine.cli import build_parser, main
from tests.engine.test_ingest import PRODUCTS, STORES


def test_every_command_has_help_with_an_example(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public walk
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example:" in text or sub._subparsers is not None, name  # noqa: SLF001


def test_init_then_import_reports_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["--database", url, "init"]) == 0
    assert (tmp_path / "listwise.secret").exists()
    (tmp_path / "stores.csv").write_text(STORES)
    assert main(["-q", "--database", url, "import", "stores", str(tmp_path / "stores.csv")]) == 0
    assert "2 rows read, 2 rows imported" in capsys.readouterr().out


def test_bad_file_exits_1_with_the_error_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    main(["--database", url, "init"])
    (tmp_path / "products.csv").write_text(PRODUCTS.replace("national", "generic"))
    assert main(["-q", "--database", url, "import", "products", str(tmp_path / "products.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: products.csv:2: column 'brand_type'")


def test_import_before_init_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stores.csv").write_text(STORES)
    assert (
        main(["-q", "--database", f"sqlite:///{tmp_path / 'new.db'}", "import", "stores", str(tmp_path / "stores.csv")])
        == 1
    )
    assert "listwise init" in capsys.readouterr().err


def test_unknown_setting_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "listwise.toml").write_text("[batch]\nthreshold = 10\n")
    assert main(["settings"]) == 1
    assert "unknown key 'threshold'" in capsys.readouterr().err


def test_settings_file_and_environment_are_layered(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "listwise.toml").write_text('chain_name = "Acme"\n[batch]\nthreshold_cents = 4000\n')
    monkeypatch.setenv("LISTWISE_DATABASE_URL", "sqlite:///env.db")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert '"threshold_cents": 4000' in out and "sqlite:///env.db" in out and '"chain_name": "Acme"' in out


def test_missing_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_global_options_are_accepted_after_the_subcommand(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["init", "--database", url]) == 0
    (tmp_path / "stores.csv").write_text(STORES)
    assert main(["import", "stores", str(tmp_path / "stores.csv"), "-q", f"--database={url}"]) == 0
    assert "2 rows read, 2 rows imported" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("listwise ")


def test_progress_off_a_terminal_is_plain_lines_without_carriage_returns(capsys):
    from engine.cli import _progress

    report = _progress(True)
    for done in (0, 1, 1, 2, 3, 3):  # a job that reports a count twice (a poll): one line for it
        report("import transactions", done, 3)
    report("print", 3, 3)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines() == [
        *(f"import transactions: {d}/3 done" for d in (1, 2, 3)),
        "print: 3/3 done",
    ]


def test_a_read_only_command_never_creates_a_database(tmp_path, capsys):
    db = tmp_path / "missing.db"
    assert (
        main(
            ["profile", "--as-of", "2025-01-01", "--out", str(tmp_path / "p.parquet"), "--database", f"sqlite:///{db}"]
        )
        == 1
    )
    assert "does not exist: run 'listwise init' first" in capsys.readouterr().err and not db.exists()


def test_an_unexpected_error_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    import engine.config

    monkeypatch.delenv("LISTWISE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)

    def broken(*_args, **_kwargs):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(engine.config, "public_settings", broken)
    assert main(["settings"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error (ValueError at ") and "boom" in err


def test_an_error_raised_in_a_local_worker_names_the_workers_line():
    """An exception from a process pool's worker (the batch's local workers) comes back re-raised by
    concurrent.futures: the one line names where the worker raised it, not concurrent.futures."""
    import json
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from engine.cli import _raised_at

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        with pytest.raises(ValueError) as info:
            pool.submit(json.loads, "{").result()
    place = _raised_at(info.value)
    assert place.startswith(" at decoder.py:") and int(place.rsplit(":", 1)[1]) > 0, place
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:  # a message quoting a file and line
        with pytest.raises(ValueError) as quoted:
            pool.submit(int, 'File "a.csv", line 7, in rows').result()
    assert "a.csv" not in _raised_at(quoted.value) and _raised_at(quoted.value).startswith(" at process.py:")
    with pytest.raises(ValueError) as here:  # raised in this process: its own last frame
        json.loads("{")
    assert _raised_at(here.value).startswith(" at decoder.py:")


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    import subprocess
    import sys

    # enough output (200 x ~3.5 KB, far beyond a 64 KiB pipe buffer) that writes go on after the reader has gone
    script = "from engine.cli import main; codes = [main(['settings']) for _ in range(200)]; print(codes[-1])"
    proc = subprocess.run(
        f'{sys.executable} -c "{script}" | head -c 1',
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr and proc.stdout == "{"
