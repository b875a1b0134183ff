"""engine.scratch: a stage's scratch directory goes when its step ends, and the next one made on the
host removes those of killed processes — never a live process's, another host's or one it cannot
attribute (the kill itself: tests/faults/test_kill_batch.py's scratch test)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.scratch import _started, scratch, sweep


def _left(root: Path, name: str, host: str, pid: int, started: str, size: int = 0) -> Path:
    d = root / name
    d.mkdir()
    (d / "owner").write_text(f"{host}\n{pid}\n{started}\n", encoding="utf-8")
    if size:
        (d / "shortlist-00.arrow").write_bytes(b"x" * size)
    return d


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that ran on this host and has exited (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_scratch_directory_is_removed_when_its_block_ends_even_on_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTWISE_SCRATCH", str(tmp_path))
    with scratch("batch") as d:
        assert d.parent == tmp_path and d.name.startswith("listwise-batch-")
        owner = (d / "owner").read_text().splitlines()
        assert owner[:2] == [socket.gethostname(), str(os.getpid())]
        (d / "part.arrow").write_bytes(b"1234")
    assert not d.exists()
    with pytest.raises(RuntimeError), scratch("stages") as d:
        raise RuntimeError("a stage failed")
    assert not d.exists() and list(tmp_path.iterdir()) == []


def test_the_next_scratch_removes_a_dead_processs_directories_and_says_so(tmp_path, monkeypatch, capsys, dead_pid):
    monkeypatch.setenv("LISTWISE_SCRATCH", str(tmp_path))
    host = socket.gethostname()
    dead = _left(tmp_path, "listwise-batch-dead1", host, dead_pid, "", size=2_500_000)
    dead_too = _left(tmp_path, "listwise-stages-dead2", host, dead_pid, "12345")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            keep = [
                _left(tmp_path, "listwise-batch-live", host, live.pid, _started(live.pid)),
                _left(tmp_path, "listwise-batch-mine", host, os.getpid(), _started(os.getpid())),
                _left(tmp_path, "listwise-batch-other-host", host + "-not", dead_pid, ""),  # a shared scratch's
            ]
            unowned = tmp_path / "listwise-batch-old"  # an older version's, or killed before its owner file
            unowned.mkdir()
            unrelated = _left(tmp_path, "somebody-else", host, dead_pid, "")
            with scratch("batch") as d:
                assert not dead.exists() and not dead_too.exists()
                assert all(k.exists() for k in keep) and unowned.exists() and unrelated.exists()
            err = capsys.readouterr().err
            assert err == f"removed 2 scratch directories (2.5 MB) that killed runs left in {tmp_path}\n"
            assert not d.exists()
            with scratch("batch"):  # nothing more to remove: nothing said
                pass
            assert capsys.readouterr().err == ""
        finally:
            live.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start times from /proc (Linux)")
def test_a_pid_now_another_processs_counts_as_gone(tmp_path):
    reused = _left(tmp_path, "listwise-batch-reused", socket.gethostname(), os.getpid(), "1")  # not our start
    ours = _left(tmp_path, "listwise-batch-ours", socket.gethostname(), os.getpid(), _started(os.getpid()))
    size = (reused / "owner").stat().st_size
    assert sweep(tmp_path) == (1, size)
    assert not reused.exists() and ours.exists()


def test_a_killed_process_leaves_its_directory_for_the_next_to_remove(tmp_path):
    env = {**os.environ, "LISTWISE_SCRATCH": str(tmp_path)}
    code = (
        "import os, signal, engine.scratch as s\n"
        "with s.scratch('batch') as d:\n"
        "    (d / 'shortlist.arrow').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(root)}, cwd=root)
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert (left / "shortlist.arrow").stat().st_size == 1000
    size = sum(f.stat().st_size for f in left.iterdir())  # the shortlist and the owner file
    assert sweep(tmp_path) == (1, size)
    assert list(tmp_path.iterdir()) == []
