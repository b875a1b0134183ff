"""What gets installed: the wheel and sdist built from the working tree, and the wheel at work.

The slow test builds both (in a copy of the tree: a build writes build/ and *.egg-info where it
runs), installs the wheel with --no-deps into a fresh virtual environment that sees the test
environment's site-packages only for the dependencies (a .pth file; .pth files *inside* that
directory, such as the editable install's finder, are not processed), then runs the console
script in a directory outside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "engine" / "schema.sql"
PACKAGES = {"engine", "cycles", "coupons", "printing"}
# what a checkout may hold that is not source: never copied into the build
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".pg",
    "demo",
    "batches",
    "listwise.db*",
    "listwise.secret",
)


def test_top_level_schema_is_a_link_to_the_one_the_package_ships():
    # a second copy would drift from the one `listwise init` runs; a link cannot
    top = ROOT / "schema.sql"
    assert top.is_symlink(), "schema.sql must stay a symlink to engine/schema.sql (edit either name, one file)"
    assert os.readlink(top) == "engine/schema.sql"  # relative: valid in every clone
    assert SCHEMA.is_file() and not SCHEMA.is_symlink()


def test_schema_statements_are_those_of_the_packaged_file():
    from engine.db import schema_statements

    text = SCHEMA.read_text(encoding="utf-8")
    created = [m.group(1) for s in schema_statements() if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s))]
    assert created == re.findall(r"^CREATE TABLE IF NOT EXISTS (\w+)", text, flags=re.MULTILINE)
    assert "baskets" in created and len(created) > 10


def _run(cmd: list, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


@pytest.mark.slow  # build ~6 s, install ~4 s, a 200-customer demo ~15-40 s
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    src, dist, home, work = tmp_path / "src", tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    assert not tmp_path.resolve().is_relative_to(ROOT)
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], cwd=tmp_path)
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")

    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        assert whl.read("engine/schema.sql") == SCHEMA.read_bytes()
    top = {n.split("/", 1)[0] for n in names}
    assert top == PACKAGES | {f"listwise-{version}.dist-info"}, "only the four layers ship (no fixtures, tests)"
    assert "engine/sample_chain/generator.py" in names and "coupons/tips.csv" in names
    with tarfile.open(sdist) as sd:
        assert sd.extractfile(f"listwise-{version}/engine/schema.sql").read() == SCHEMA.read_bytes()

    venv.create(home, with_pip=False)
    python = home / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"} and not k.startswith("LISTWISE_")
    }
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path, env=env
        ).stdout.strip()
    )
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_listwise_test_dependencies.pth").write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        cwd=tmp_path,
        env=env,
    )

    work.mkdir()
    where = _run(
        [python, "-c", "import engine, printing; print(engine.__file__); print(printing.__file__)"], cwd=work, env=env
    ).stdout.split()
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in where), where  # not the repository
    listwise = python.parent / "listwise"
    assert _run([listwise, "--version"], cwd=work, env=env).stdout.strip() == f"listwise {version}"

    assert "initialised sqlite:///listwise.db" in _run([listwise, "init"], cwd=work, env=env).stdout
    with sqlite3.connect(work / "listwise.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert (
        set(re.findall(r"^CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA.read_text(encoding="utf-8"), re.MULTILINE))
        <= tables
    )
    assert (work / "listwise.secret").is_file()

    out = _run([listwise, "-q", "demo", "--dir", "demo", "--customers", "200", "--weeks", "8"], cwd=work, env=env)
    assert "generated 200 customers x 8 weeks" in out.stdout
    assert (work / "demo" / "report" / "report.html").is_file()
    assert any((work / "demo" / "batches").rglob("*.pdf"))
