"""Failed-check limits shared by every process of the checkout service: token buckets in a table.

`engine.server._FailureLimits` keeps its buckets in one process's memory: exact for
``listwise serve`` with one worker, but with ``--workers N`` a guesser whose connections
spread over the workers would get up to N times the limit. `SharedFailureLimits` has the same
two calls and the same arithmetic (a bucket of `capacity` tokens refilling at `capacity` per
`window` seconds; a failed check takes one), its buckets rows of ``check_failures``, updated
in one statement each, so N workers see one limit — and a restart forgets nothing.

The clock is the wall clock (``time.time``), the one clock the processes share. Only failed
checks write; every request carrying codes reads its two rows first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from engine.db import is_sqlite, schema_statements

__all__ = ["SharedFailureLimits"]


class SharedFailureLimits:
    """Token buckets of failed code checks, per API key and per (store, lane), in the database."""

    def __init__(
        self, engine: sa.Engine, per_key: int, per_lane: int, window: float, clock: Callable[[], float] = time.time
    ):
        self.engine, self.per_key, self.per_lane, self.window, self.clock = engine, per_key, per_lane, window, clock
        sqlite = is_sqlite(engine)
        least, greatest = ("MIN", "MAX") if sqlite else ("LEAST", "GREATEST")
        # the refilled level less one, never below zero; a clock behind the row's never refills
        self._take = sa.text(
            "INSERT INTO check_failures (bucket, tokens, at) VALUES (:b, :cap - 1, :now) ON CONFLICT (bucket) DO "
            f"UPDATE SET tokens = {greatest}(0, {least}(:cap, check_failures.tokens + "
            f"{greatest}(0, :now - check_failures.at) * :cap / :window) - 1), "
            f"at = {greatest}(check_failures.at, :now)"
        )
        with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:  # a database from before
            for statement in schema_statements():
                if "check_failures" in statement:
                    conn.exec_driver_sql(statement)

    def _ids(self, key_id: int, store: str, lane: int | None) -> list[tuple[str, int]]:
        return [(f"key:{key_id}", self.per_key), (f"lane:{store}:{lane}", self.per_lane)]

    def wait(self, key_id: int, store: str, lane: int | None) -> int:
        """Seconds until this key and lane may try a code again; 0 = now."""
        ids = dict(self._ids(key_id, store, lane))
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT bucket, tokens, at FROM check_failures WHERE bucket IN (:k, :l)"),
                {"k": next(iter(ids)), "l": list(ids)[1]},
            ).all()
        need = 0.0
        for bucket, tokens, at in rows:
            cap = ids[bucket]
            level = min(cap, tokens + max(0.0, now - at) * cap / self.window)
            need = max(need, (1 - level) * self.window / cap)
        return 0 if need <= 0 else max(1, int(need + 0.999))

    def fail(self, key_id: int, store: str, lane: int | None) -> None:
        now = self.clock()
        with self.engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
            for bucket, cap in self._ids(key_id, store, lane):
                conn.execute(self._take, {"b": bucket, "cap": float(cap), "now": now, "window": self.window})
            # a bucket untouched for a whole window is full again: its row says nothing (the table stays small)
            conn.execute(sa.text("DELETE FROM check_failures WHERE at < :old"), {"old": now - self.window})
