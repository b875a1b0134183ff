"""Scratch directories: the files a command's stages hand each other (partition files, profiles, shortlists).

Each is made under ``LISTWISE_SCRATCH`` (default: the system's temporary directory; on a cluster, a
directory every worker mounts) as ``listwise-<kind>-<random>`` and removed when its step ends. A
process killed (kill -9, the out-of-memory killer, a power cut) cannot remove its own, so each holds an
exclusive lock (flock) on the directory's ``owner`` file while it lives — the kernel lets go of it when
the process dies, in whatever container or PID namespace it ran — and the next `scratch` made on the
host removes every directory whose lock it can take, saying on stderr how many and how large (a
1M-customer batch's shortlists are gigabytes). Left alone: directories of a live process, of another
host (the owner file names it: a shared scratch's locks are that host's to judge), of another user,
and those without an owner file (an older version's). A sweep never fails the command that makes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so no sweep (a killed run's directory stays)
    fcntl = None  # type: ignore[assignment]

__all__ = ["scratch", "scratch_root", "sweep"]

_PREFIX = "listwise-"
_OWNER = "owner"
_OWNER_MAX = 4096  # bytes of an owner file read: anyone may put a file of that name in /tmp


def scratch_root() -> Path:
    """``LISTWISE_SCRATCH``, else the system's temporary directory."""
    return Path(os.environ.get("LISTWISE_SCRATCH") or tempfile.gettempdir())


def _size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _remove_if_abandoned(entry: os.DirEntry) -> int | None:
    """Remove `entry`, a ``listwise-*`` directory, when its owner file says this host and its lock is
    free (the process that held it is gone); its bytes, or None when it stays."""
    if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
        return None
    try:
        fd = os.open(os.path.join(entry.path, _OWNER), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no owner file: not ours to judge
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        host = os.read(fd, _OWNER_MAX).decode("utf-8", "replace").split("\n", 1)[0]
        if host != socket.gethostname():
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its process lives
        size = _size(entry.path)
        shutil.rmtree(entry.path, ignore_errors=True)
        return None if os.path.lexists(entry.path) else size
    finally:
        os.close(fd)


def sweep(root: Path | None = None) -> tuple[int, int]:
    """Remove the scratch directories under `root` (default `scratch_root()`) that processes of this host
    left when they died; (directories removed, their bytes). Whatever it meets, it raises nothing."""
    if fcntl is None:
        return 0, 0
    removed = size = 0
    try:
        entries = [e for e in os.scandir(root or scratch_root()) if e.name.startswith(_PREFIX)]
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            freed = _remove_if_abandoned(entry)
        except Exception:  # noqa: BLE001 - a stranger's file must not fail the command
            continue
        if freed is not None:
            removed += 1
            size += freed
    return removed, size


def _own(path: Path) -> int | None:
    """The owner file of the new directory `path`, locked, written, then put in place (a sweep never sees
    it unlocked or empty); its descriptor, held until the directory is removed."""
    if fcntl is None:
        return None
    fd = os.open(path / f".{_OWNER}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{socket.gethostname()}\n{os.getpid()}\n".encode())
        os.rename(path / f".{_OWNER}", path / _OWNER)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A new scratch directory ``listwise-<kind>-*`` for the block, removed after it; first, those that
    killed processes left (`sweep`), with a line on stderr when there were any."""
    root = scratch_root()
    removed, size = sweep(root)
    if removed:
        print(
            f"removed {removed} scratch director{'y' if removed == 1 else 'ies'} ({size / 1e6:,.1f} MB) "
            f"that killed runs left in {root}",
            file=sys.stderr,
        )
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-", dir=root))
    fd = None
    try:
        fd = _own(path)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            os.close(fd)  # the lock goes after the directory
