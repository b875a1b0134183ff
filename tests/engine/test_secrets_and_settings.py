"""The list-code secret stays the database's own, and settings out of range are refused before they run."""

import json
import stat

import pytest
import sqlalchemy as sa

from engine.chain_key import fingerprint
from engine.cli import main
from engine.config import load_settings
from engine.errors import ConfigError


def test_init_writes_a_private_secret_and_binds_its_fingerprint(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "--database", db_url, "init"]) == 0
    secret = tmp_path / "listwise.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT value FROM chain_meta WHERE name = 'secret_fingerprint'")).scalar()
    engine.dispose()
    assert stored == fingerprint(secret.read_text().strip().encode())
    assert main(["-q", "--database", db_url, "init"]) == 0  # init again here: the same key, fine


def test_init_from_another_directory_refuses_to_mint_a_second_secret(db_url, tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert main(["-q", "--database", db_url, "init"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    assert main(["-q", "--database", db_url, "init"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: this database was initialised with a list-code secret") and err.count("\n") == 1
    assert not (tmp_path / "b" / "listwise.secret").exists()
    monkeypatch.setenv("LISTWISE_SECRET", "another key")  # and another key is named as such
    assert main(["-q", "--database", db_url, "init"]) == 1
    assert "is not the one this database was initialised with" in capsys.readouterr().err


def test_a_batch_under_another_secret_is_refused(sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "--database", sqlite_url, "init"]) == 0
    monkeypatch.setenv("LISTWISE_SECRET", "not the original")
    capsys.readouterr()
    assert main(["-q", "--database", sqlite_url, "batch", "run", "--period-start", "2025-01-06", "--no-print"]) == 1
    assert "every printed code would fail" in capsys.readouterr().err


def test_an_empty_secret_file_is_refused(sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "listwise.secret").write_text("\n")
    assert main(["-q", "--database", sqlite_url, "init"]) == 1
    assert "listwise.secret: the secret file is empty" in capsys.readouterr().err


def test_settings_never_show_the_database_password(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_DATABASE_URL", "postgresql://chain:hunter2@db.example/listwise")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert json.loads(out)["database_url"] == "postgresql://chain:***@db.example/listwise"


@pytest.mark.parametrize(
    "toml, key",
    [
        ("[batch]\nholdout_share = 1.5\n", "batch.holdout_share must be in [0, 1), got 1.5"),
        ("[batch]\nmax_offers = 0\n", "batch.max_offers must be >= 1, got 0"),
        ('timezone = "Mars/Olympus"\n', "timezone must be an IANA time zone name"),
        ("[cycles]\nvolume_cuts = [0.7, 0.3]\n", "cycles.volume_cuts must be two increasing quantiles"),
        ('[[campaigns]]\ncategory = "X*"\ndepth_by_tier = { high = 1.2 }\n', "campaigns[0].depth_by_tier"),
        ("[offers]\nconversion_hold_probability = -0.1\n", "offers.conversion_hold_probability must be in [0, 1]"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "listwise.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: {key}")


def test_the_defaults_are_in_range(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTWISE_DATABASE_URL", raising=False)
    assert load_settings().batch.holdout_share == 0.05
