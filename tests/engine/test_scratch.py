"""engine.scratch: a stage's scratch directory goes when its step ends, and the next one made on the
host removes those killed processes left — never a live process's (in this PID namespace or another),
another host's or one it cannot attribute, and nothing a stranger puts in /tmp fails or hangs the
command (a killed `batch run`: tests/faults/test_kill_globals.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.scratch import scratch, sweep

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sweep needs POSIX locks")


def _holder(root: Path, *, kill: bool, payload: int = 0, namespace: bool = False) -> subprocess.Popen:
    """A process that makes a scratch directory under `root` (`payload` bytes in it) and then is SIGKILLed
    (`kill`) or sleeps holding it; `namespace`: in a PID namespace of its own (unshare), where it is pid 1."""
    code = (
        "import os, signal, sys, time, engine.scratch as s\n"
        "with s.scratch('batch') as d:\n"
        f"    (d / 'shortlist.arrow').write_bytes(b'x' * {payload})\n"
        "    print(d, flush=True)\n"
        f"    os.kill(os.getpid(), signal.SIGKILL) if {kill} else time.sleep(60)\n"
    )
    cmd = [sys.executable, "-c", code]
    if namespace:
        cmd = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount-proc", *cmd]
    env = {**os.environ, "LISTWISE_SCRATCH": str(root), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()  # the directory is made and locked once it is printed
    assert line, "the holder made no directory"
    proc.made = Path(line)
    return proc


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def test_a_scratch_directory_is_removed_when_its_block_ends_even_on_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTWISE_SCRATCH", str(tmp_path))
    with scratch("batch") as d:
        assert d.parent == tmp_path and d.name.startswith("listwise-batch-")
        assert (d / "owner").read_text().splitlines() == [socket.gethostname(), str(os.getpid())]
        (d / "part.arrow").write_bytes(b"1234")
        assert sweep(tmp_path) == (0, 0)  # its own live directory: locked
        assert d.exists()
    assert not d.exists()
    with pytest.raises(RuntimeError), scratch("stages") as d:
        raise RuntimeError("a stage failed")
    assert not d.exists() and list(tmp_path.iterdir()) == []


def test_the_next_scratch_removes_a_killed_processs_directory_and_keeps_a_live_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LISTWISE_SCRATCH", str(tmp_path))
    live = _holder(tmp_path, kill=False)  # first: a holder's own scratch() sweeps too
    try:
        killed = _holder(tmp_path, kill=True, payload=2_500_000)
        assert killed.wait(30) == -signal.SIGKILL and killed.made.is_dir()  # it could not remove its own
        other_host = tmp_path / "listwise-batch-other-host"  # a shared scratch: that host's to judge
        other_host.mkdir()
        (other_host / "owner").write_text(f"{socket.gethostname()}-elsewhere\n123\n")
        unowned = tmp_path / "listwise-batch-old"  # an older version's
        unowned.mkdir()
        unrelated = tmp_path / "somebody-else"
        unrelated.mkdir()
        (unrelated / "owner").write_text(f"{socket.gethostname()}\n1\n")
        with scratch("batch") as d:
            assert not killed.made.exists()
            assert live.made.is_dir() and other_host.exists() and unowned.exists() and unrelated.exists()
        size = 2_500_000 + len(f"{socket.gethostname()}\n{killed.pid}\n")
        err = capsys.readouterr().err
        assert err == f"removed 1 scratch directory ({size / 1e6:,.1f} MB) that killed runs left in {tmp_path}\n"
        assert not d.exists()
        with scratch("batch"):  # nothing more to remove: nothing said
            pass
        assert capsys.readouterr().err == ""
        assert live.made.is_dir()
    finally:
        live.kill()
        live.wait()
    assert sweep(tmp_path) == (1, len(f"{socket.gethostname()}\n{live.pid}\n"))  # now that it is gone


@pytest.mark.skipif(not _unshare_works(), reason="no unprivileged PID namespaces here")
def test_a_live_process_in_another_pid_namespace_keeps_its_directory(tmp_path):
    """Its pid (1 in its namespace) means nothing here: the lock does (FAILED with pid liveness checks)."""
    inside = _holder(tmp_path, kill=False, namespace=True)
    try:
        assert (inside.made / "owner").read_text().splitlines()[1] == "1"
        assert sweep(tmp_path) == (0, 0) and inside.made.is_dir()
    finally:
        inside.kill()
        inside.wait()
    deadline = time.monotonic() + 10  # the namespace's process dies with its init
    while sweep(tmp_path) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not inside.made.exists()


def test_what_a_stranger_puts_in_the_scratch_neither_fails_nor_hangs_a_sweep(tmp_path):
    host = socket.gethostname()
    fifo = tmp_path / "listwise-batch-fifo"  # reading it would wait for a writer for ever
    fifo.mkdir()
    os.mkfifo(fifo / "owner")
    link = tmp_path / "listwise-batch-link"  # an endless file behind a symlink
    link.mkdir()
    (link / "owner").symlink_to("/dev/zero")
    odd = tmp_path / "listwise-batch-odd"  # no lock held, but garbage for a host line
    odd.mkdir()
    (odd / "owner").write_bytes(b"\xff\xfe\x00" * 5000)
    (tmp_path / "listwise-batch-file").write_text(f"{host}\n1\n")  # a file, not a directory
    (tmp_path / "listwise-batch-dirlink").symlink_to(odd)
    started = time.monotonic()
    assert sweep(tmp_path) == (0, 0)
    assert time.monotonic() - started < 5
    assert all(p.exists() for p in (fifo, link, odd, tmp_path / "listwise-batch-file"))
