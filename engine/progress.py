"""Progress of a long job: one callback shape, and the one that writes it to stderr.

Every long job (import, profile, batch, print, extract, demo) takes an optional
``progress(label, done, total)`` — `Progress` — and calls it after each step. The command
line passes `stderr_progress`; a library caller passes its own, or None.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["Progress", "stderr_progress", "labelled"]

Progress = Callable[[str, int, int], None]


def stderr_progress(enabled: bool) -> Progress | None:
    """A progress callback for stderr, or None when not `enabled` (``-q``).

    On a terminal it redraws ``label: done/total`` in place; otherwise (a log file, a pipe)
    it writes one plain line per finished step, never a carriage return.
    """
    if not enabled:
        return None
    live = sys.stderr.isatty()
    last = None  # the line a log was last given

    def report(label: str, done: int, total: int) -> None:
        nonlocal last
        if live:
            end = "\n" if done >= total else "\r"
            print(f"{label}: {done:,}/{total:,}", end=end, file=sys.stderr, flush=True)
        elif done and (label, done, total) != last:  # a start (0 done) is not a milestone, nor a repeat
            print(f"{label}: {done:,}/{total:,} done", file=sys.stderr, flush=True)
            last = (label, done, total)

    return report


def labelled(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    """`progress` for a caller that reports ``(done, total)`` only (fixtures.generator), under `label`."""
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)
