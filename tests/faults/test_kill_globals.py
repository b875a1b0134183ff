"""The local pool during the globals (engine.stages._local_pool, since prof3): its workers start while
the command's own process fits the globals, and the categories' prior fits go to them (`_pool_map`).

There is no fault point inside the globals, so a `sitecustomize` on PYTHONPATH (in tmp_path, this test's
own) plants the fault: in the command's process (`hold`: profile_globals waits, the pool's workers idle,
after writing a marker) or in its pool's workers (`kill-fit`: a worker's first category fit kills it).

- a worker killed in the priors' fits: one line, the batch 'failed', the re-run gives the plain batch;
- Ctrl-C (SIGINT to the command's process group) during the globals: one line, "interrupted", as before
  the pool started early (FAILS at 85b2a3e: each idle worker prints a KeyboardInterrupt traceback);
- the command's process killed (kill -9, or the OOM killer) during the globals: its workers go with it
  (FAILS at 85b2a3e: the idle workers wait on the call queue forever, orphaned);
- the same two during the partitions (`hold-part`: a worker's partition stage waits 120 s): Ctrl-C ends
  the command at once, one line, the workers' stages stopped (they ignore SIGINT, the command kills
  them); kill -9 of the command ends its busy workers too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.conftest import ROOT, RUN, SECRET, copy_database, dump_batches

_HOOK = """
import os, signal, time
hook = os.environ.get("REV_HOOK", "")
if hook:
    driver = os.environ.setdefault("REV_DRIVER_PID", str(os.getpid())) == str(os.getpid())
    if driver and hook == "hold":
        import engine.stages as st
        real = st.profile_globals
        def held(*a, **k):
            open(os.environ["REV_MARKER"], "w").write(str(os.getpid()))
            time.sleep(60)
            return real(*a, **k)
        st.profile_globals = held
    if not driver and hook == "hold-part":
        import engine.stages as st
        def held_stage(*a, **k):
            open(os.environ["REV_MARKER"], "w").write(str(os.getpid()))
            time.sleep(120)
        st.partition_stage = held_stage
    if not driver and hook == "kill-fit":
        import cycles.purchase_cycle as pc
        real_fit = pc._fit_category
        def fit(task):
            os.kill(os.getpid(), signal.SIGKILL)
        fit.__module__, fit.__qualname__ = real_fit.__module__, real_fit.__qualname__
        pc._fit_category = fit
"""

RENEWAL = '[cycles]\np_buy_model = "renewal"\n'  # with the ranker, its own priors leave the pool no fits


def _start(url: str, tmp: Path, hook: str | None, *args: str) -> subprocess.Popen:
    """``listwise -q --database URL ARGS`` in its own session, SIGINT at its default (a terminal's)."""
    (tmp / "hook").mkdir(exist_ok=True)
    (tmp / "hook" / "sitecustomize.py").write_text(_HOOK)
    (tmp / "scratch").mkdir(exist_ok=True)  # the command's scratch directories: this test's own
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp / 'hook'}{os.pathsep}{ROOT}",
        "LISTWISE_SECRET": SECRET,
        "LISTWISE_SCRATCH": str(tmp / "scratch"),
    }
    env.pop("LISTWISE_FAULT", None)
    env.pop("REV_DRIVER_PID", None)
    if hook:
        env.update(REV_HOOK=hook, REV_MARKER=str(tmp / "marker"))
    cmd = [sys.executable, "-m", "engine.cli", "-q", "--database", url, *args]
    err = tmp / f"stderr-{len(list(tmp.glob('stderr-*')))}"
    with open(err, "w") as stderr:  # not a pipe: orphaned workers would hold it open
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    proc.err_path = err
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for the command; its stderr."""
    proc.wait(timeout)
    return proc.err_path.read_text()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _held(proc: subprocess.Popen, tmp: Path, settle: float = 0) -> list[int]:
    """Wait until the hook holds (its marker written), then `settle` seconds; the pool's workers' pids."""
    deadline = time.monotonic() + 120
    while not (tmp / "marker").exists():
        assert proc.poll() is None, _finish(proc)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(settle)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) >= 2, workers
    return workers


# where the command is held: its globals (the workers idle; 3 s for them to start: spawn, imports), or a
# worker's partition stage (the other worker idle or in its own)
PHASES = {"globals": ("hold", 3.0), "partitions": ("hold-part", 0.0)}


@pytest.mark.slow  # three CLI batch runs
def test_a_worker_killed_in_the_globals_prior_fits_then_a_rerun_gives_the_uninterrupted_batch(
    request, batched_chain, tmp_path
):
    _, base = batched_chain
    (tmp_path / "listwise.toml").write_text(RENEWAL)
    plain_url = copy_database(request, base, tmp_path)
    plain = _start(plain_url, tmp_path, None, *RUN, "--out", str(tmp_path / "plain"))
    assert not _finish(plain) and plain.returncode == 0
    expected = dump_batches(plain_url)

    url = copy_database(request, base, tmp_path)
    scale = ("--partitions", "4", "--executor", "local")
    killed = _start(url, tmp_path, "kill-fit", *RUN, *scale, "--out", str(tmp_path / "out"))
    err = _finish(killed)
    assert killed.returncode == 1, err
    assert "while the globals were fitted" in err and len(err.strip().splitlines()) == 1, err
    assert dump_batches(url)["batches"][-1][-1] == "failed"

    again = _start(url, tmp_path, None, *RUN, *scale, "--out", str(tmp_path / "out"))
    assert not _finish(again) and again.returncode == 0
    assert dump_batches(url) == expected


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_ends_the_command_at_once_in_one_line_and_leaves_no_process(request, batched_chain, tmp_path, phase):
    """FAILS at 85b2a3e during the globals: the idle workers, in the command's process group, each print a
    traceback. During the partitions the command must not wait for the held stage (120 s)."""
    _, base = batched_chain
    url = copy_database(request, base, tmp_path)
    hook, settle = PHASES[phase]
    proc = _start(url, tmp_path, hook, *RUN, "--partitions", "4", "--executor", "local", "--out", str(tmp_path))
    workers = _held(proc, tmp_path, settle)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    err = _finish(proc, 100)
    assert time.monotonic() - started < 30
    time.sleep(1)
    assert not [w for w in workers if _alive(w)]
    assert proc.returncode == 130
    assert err.strip() == "interrupted", err
    assert dump_batches(url)["batches"][-1][-1] != "done"


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_the_command_killed_leaves_no_worker_behind(request, batched_chain, tmp_path, phase):
    """FAILS at 85b2a3e during the globals: kill -9 (or the OOM killer) of the command leaves its pool's idle
    workers (polars, numba loaded) orphaned and waiting on the call queue for ever. During the partitions,
    the batch's scratch directory it leaves is removed by the next run, which says so (FAILS at 3d3b9be:
    every killed run's directory stayed in the system's temporary directory for good)."""
    _, base = batched_chain
    url = copy_database(request, base, tmp_path)
    hook, settle = PHASES[phase]
    proc = _start(url, tmp_path, hook, *RUN, "--partitions", "4", "--executor", "local", "--out", str(tmp_path))
    workers = _held(proc, tmp_path, settle)
    proc.kill()
    _finish(proc, 60)
    deadline = time.monotonic() + 20
    while [w for w in workers if _alive(w)] and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [w for w in workers if _alive(w)]
    for w in left:  # this test's own orphans, by pid
        os.kill(w, signal.SIGKILL)
    assert not left, f"{len(left)} pool workers outlived the killed command"
    if phase == "partitions":
        (kept,) = (tmp_path / "scratch").iterdir()  # the killed command's, with its owner file
        assert kept.name.startswith("listwise-batch-") and (kept / "owner").is_file()
        again = _start(url, tmp_path, None, *RUN, "--partitions", "4", "--executor", "local", "--out", str(tmp_path))
        err = _finish(again)
        assert again.returncode == 0, err
        assert "removed 1 scratch directory" in err and "that killed runs left in" in err, err
        assert list((tmp_path / "scratch").iterdir()) == []
