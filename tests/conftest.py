"""Shared fixtures: real databases (SQLite file and a PostgreSQL server) for the tests.

PostgreSQL: `LISTWISE_TEST_PG_URL` (a server the caller started, e.g. by .ci/run) or else a
throw-away cluster this session starts from Debian's binaries on a free loopback port
(as the `postgres` user when running as root, which PostgreSQL refuses). Where no server
can start, PostgreSQL tests are skipped with the reason shown in the summary (-ra).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from engine.db import connect, init_schema


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Cluster:
    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found; install Debian's postgresql")
        self.root = Path(tempfile.mkdtemp(prefix="listwise-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.pg_ctl = pg_ctl
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # postgres will not run as root
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        result = subprocess.run(self.prefix + cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {result.stderr.strip() or result.stdout.strip()}")

    def stop(self) -> None:
        subprocess.run(
            self.prefix + [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _scratch(tmp_path_factory):
    """The commands' scratch directories (engine.scratch) under this session's temporary directory, the CLI's
    child processes' too: a killed run's (tests/faults) goes with the session's, not into /tmp for good."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LISTWISE_SCRATCH", str(tmp_path_factory.mktemp("scratch")))
        yield


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server's maintenance database, or skip with the reason."""
    if os.environ.get("LISTWISE_TEST_PG_URL"):
        yield os.environ["LISTWISE_TEST_PG_URL"]
        return
    try:
        cluster = _Cluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _fresh_pg_database(server_url: str) -> str:
    import sqlalchemy as sa

    name = f"lw_{uuid.uuid4().hex[:12]}"
    admin = connect(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return str(sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False))


def sa_database(url: str) -> str:
    """The database name of `url`."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).database


def fresh_database(request, directory: Path, kind: str, name: str = "listwise.db") -> str:
    """URL of a new, initialised database of `kind` ('sqlite' file in `directory`, or 'postgres')."""
    history = None  # SQLite: beside the file
    if kind == "sqlite":
        url = f"sqlite:///{directory / name}"
    else:
        url = _fresh_pg_database(request.getfixturevalue("pg_server"))
        history = str(directory / f"{sa_database(url)}.history")
    engine = connect(url)
    init_schema(engine, history_path=history)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """URL of a new, initialised database: a SQLite file, then a PostgreSQL database."""
    return fresh_database(request, tmp_path, request.param)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a new, initialised SQLite database file."""
    url = f"sqlite:///{tmp_path / 'listwise.db'}"
    engine = connect(url)
    init_schema(engine)
    engine.dispose()
    return url
