"""Named kill points for the fault suite (tests/faults): ``LISTWISE_FAULT=name`` or ``name#n``.

A test sets the variable and runs a real command; the process kills itself with SIGKILL at that
point (the n-th time it is reached), so a kill -9 lands at a known place of a write with no
timing guesswork. Unset (always, outside tests), a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point"]

_FAULTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL) at point `name` when LISTWISE_FAULT is `name` or `name#n` (n-th time).

    For tests/faults only: a kill -9 at a known point of the write, no timing guesswork.
    """
    wanted = os.environ.get("LISTWISE_FAULT")
    if not wanted or not wanted.startswith(name):
        return
    _FAULTS[name] = _FAULTS.get(name, 0) + 1
    if wanted in (name, f"{name}#{_FAULTS[name]}"):
        os.kill(os.getpid(), signal.SIGKILL)
