"""Scratch directories: the files a command's stages hand each other (partition files, profiles, shortlists).

Each is made under ``LISTWISE_SCRATCH`` (default: the system's temporary directory; on a cluster, a
directory every worker mounts) as ``listwise-<kind>-<random>``, with an ``owner`` file naming the host,
the process and the process's start time, and removed when its step ends. A process killed (kill -9,
the out-of-memory killer, a power cut) cannot remove its own: the next `scratch` made on that host
removes every directory whose owner was a process of this host that is gone, and says on stderr how
many and how large (a 1M-customer batch's shortlists are gigabytes). A live process's directories,
another host's (a shared scratch on a cluster) and those without an owner file (made by an older
version, or killed between the directory and its file) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["scratch", "scratch_root", "sweep"]

_PREFIX = "listwise-"
_OWNER = "owner"


def scratch_root() -> Path:
    """``LISTWISE_SCRATCH``, else the system's temporary directory."""
    return Path(os.environ.get("LISTWISE_SCRATCH") or tempfile.gettempdir())


def _started(pid: int) -> str:
    """The process's start time as the kernel counts it (Linux: /proc; elsewhere "", the pid alone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime; the name may hold ")"
    except (OSError, IndexError):
        return ""


def _identity() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}\n{pid}\n{_started(pid)}\n"


def _gone(owner: str) -> bool:
    """Whether the process an owner file names ran on this host and no longer runs (a pid now another
    process's, told by its start time, counts as gone)."""
    host, pid_text, started = ([*owner.splitlines(), "", "", ""])[:3]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        pass
    except OSError:
        return False
    return bool(started) and _started(pid) not in ("", started)


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def sweep(root: Path | None = None) -> tuple[int, int]:
    """Remove the scratch directories under `root` (default `scratch_root()`) left by processes of this
    host that are gone; (directories removed, their bytes)."""
    root = root or scratch_root()
    removed = size = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            owner = Path(entry.path, _OWNER).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not _gone(owner):
            continue
        bytes_ = _size(Path(entry.path))
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed += 1
            size += bytes_
    return removed, size


@contextlib.contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A new scratch directory ``listwise-<kind>-*`` for the block, removed after it; first, those of
    killed processes (`sweep`), with a line on stderr when there were any."""
    root = scratch_root()
    removed, size = sweep(root)
    if removed:
        print(
            f"removed {removed} scratch director{'y' if removed == 1 else 'ies'} ({size / 1e6:,.1f} MB) "
            f"that killed runs left in {root}",
            file=sys.stderr,
        )
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-", dir=root))
    try:
        (path / _OWNER).write_text(_identity(), encoding="utf-8")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
