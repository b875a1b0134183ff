"""Database access: SQLAlchemy for the schema and point operations, ADBC for bulk.

The same `schema.sql` serves SQLite (the embedded default) and PostgreSQL. Bulk paths
move Arrow tables through ADBC (about 1M rows/s into SQLite here, COPY into PostgreSQL)
instead of row-by-row inserts; everything else goes through SQLAlchemy Core.

One rule for SQLite: the ADBC driver carries its own copy of the SQLite library, and two
copies in one process must never have the same file open at once (POSIX locks are per
process: one copy closing its descriptor drops the other's locks, and SQLite reports a
"disk I/O error"). So SQLite engines use NullPool — no idle connection lingers — and code
closes its SQLAlchemy connection before it opens a bulk session; bulk sessions close theirs
too, but inside `Gateway.keeping` (an import's run of bulk sessions), which closes them at its
end or before a SQLAlchemy connection opens. Separate processes (the checkout service beside a
batch) are safe: each has one copy.

`Gateway` keeps that rule in one place: a command builds one (from its settings' URL) and
every read and write of the command goes through it — SQLAlchemy connections for point
operations, ADBC bulk sessions for frames, the typed readers of the tables the batch, the
profile and the report share (products, customers, history, deals, batches). It refuses an
ADBC session while one of its SQLAlchemy connections is open on SQLite, and the reverse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from engine.errors import CodeError, StateError
from engine.values import iso_date

if TYPE_CHECKING:
    from engine.history_store import HistoryStore

__all__ = [
    "connect",
    "init_schema",
    "schema_statements",
    "allocate_keys",
    "bulk_session",
    "BulkSession",
    "MissingReference",
    "Gateway",
    "read_frame",
    "typed",
    "Schema",
    "utc_now",
    "is_sqlite",
    "require_schema",
    "require_database",
    "shown",
    "PRODUCT_SCHEMA",
    "PRODUCT_ATTRIBUTES",
    "CUSTOMER_SCHEMA",
    "LINE_SCHEMA",
    "DEAL_SCHEMA",
    "HISTORY_COLUMNS",
    "with_products",
]


def utc_now() -> dt.datetime:
    """Now in UTC without tzinfo: how every *_at column is stored (see schema.sql)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def is_sqlite(url: str | sa.Engine) -> bool:
    backend = url.url.get_backend_name() if isinstance(url, sa.Engine) else make_url(url).get_backend_name()
    return backend == "sqlite"


def _normalise(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    return u.render_as_string(hide_password=False)


def connect(url: str, pooled: bool = False) -> sa.Engine:
    """An Engine for `url`; SQLite gets WAL, foreign keys and a busy timeout.

    SQLite engines have no pool (see the module docstring) unless `pooled`, which only a
    process that never opens an ADBC session may ask for (the checkout service).

    On SQLite, transactions start with an explicit BEGIN (the pysqlite recipe in the
    SQLAlchemy docs); a writer that must not fail on lock upgrade asks for
    ``conn.execution_options(sqlite_begin="IMMEDIATE")`` before its first statement.
    """
    if is_sqlite(url) and not pooled:
        engine = sa.create_engine(_normalise(url), poolclass=sa.pool.NullPool)
    elif is_sqlite(url):  # a process that never opens ADBC (the checkout service)
        engine = sa.create_engine(
            _normalise(url), poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=28, pool_timeout=30
        )
    else:
        engine = sa.create_engine(_normalise(url), pool_pre_ping=True)
    if is_sqlite(engine):

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001 - DB-API connection
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return engine


def schema_statements() -> list[str]:
    """The statements of schema.sql, in order."""
    text = _schema_text()
    statements, current = [], []
    for line in text.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped:
            continue
        current.append(stripped)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip(";"))
            current = []
    return statements


def _schema_text() -> str:
    # engine/schema.sql is the one file (the repository's top-level schema.sql links to it), read
    # as package data so an installed wheel finds it exactly as a checkout does
    return resources.files("engine").joinpath("schema.sql").read_text(encoding="utf-8")


def init_schema(engine: sa.Engine, history_path: str | None = None, buckets: int | None = None) -> None:
    """Create every table and index (idempotent), and the history store's row.

    `history_path`: the directory of the Parquet history (`[history] path`; None or "": beside a
    SQLite file, unset on PostgreSQL); given on a database that has a store, it replaces the
    recorded path (the directory was moved). `buckets`: fixed when the store is created (None:
    64); a different number for an existing store is a `StateError`.
    """
    from engine.history_store import DEFAULT_BUCKETS

    with engine.begin() as conn:
        for statement in schema_statements():
            conn.exec_driver_sql(statement)
        # columns added after a database was first created (CREATE TABLE IF NOT EXISTS keeps the old table)
        have = {c["name"] for c in sa.inspect(conn).get_columns("baskets")}
        for column, sql_type in _ADDED_COLUMNS["baskets"]:
            if column not in have:
                conn.exec_driver_sql(f"ALTER TABLE baskets ADD COLUMN {column} {sql_type}")
        row = conn.execute(sa.text("SELECT buckets, path FROM history_store")).fetchone()
        if row is None:
            conn.execute(
                sa.text("INSERT INTO history_store (store_id, buckets, path) VALUES (1, :b, :p)"),
                {"b": buckets or DEFAULT_BUCKETS, "p": history_path or None},
            )
            return
        if buckets is not None and buckets != row[0]:
            raise StateError(
                f"setting 'history.buckets' is {buckets} but this database's history was created with "
                f"{row[0]} buckets (fixed at creation)"
            )
        if history_path and history_path != row[1]:
            conn.execute(sa.text("UPDATE history_store SET path = :p"), {"p": history_path})


# table -> columns a later version added, as (name, type): `init_schema` adds them to an older database
_ADDED_COLUMNS = {"baskets": [("line_count", "INTEGER"), ("line_sum", "BIGINT")]}


def require_schema(engine: sa.Engine) -> None:
    """`StateError` unless `listwise init` has run against this database.

    A SQLite file that does not exist is refused before anything connects, so no command
    but `init` ever leaves an empty database file behind.
    """
    u = engine.url
    if (
        u.get_backend_name() == "sqlite"
        and u.database not in (None, "", ":memory:")
        and not u.database.startswith("file:")
        and not Path(u.database).is_file()
    ):
        raise StateError(f"database {u.render_as_string(hide_password=True)} does not exist: run 'listwise init' first")
    if not sa.inspect(engine).has_table("sequences"):
        raise StateError(
            f"database {engine.url.render_as_string(hide_password=True)} is not initialised: run 'listwise init' first"
        )


def shown(url: str) -> str:
    """`url` as it may be printed: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def require_database(url: str) -> None:
    """`StateError` unless `url` is an initialised database; a read-only command calls this first.

    A SQLite file that does not exist is refused before anything connects (connecting would
    create an empty file).
    """
    with Gateway(url) as db:
        db.require()


def allocate_keys(conn: sa.Connection | BulkSession, name: str, n: int, above: int = 0) -> int:
    """Reserve `n` consecutive keys of sequence `name`; returns the first.

    Runs inside the caller's transaction, a SQLAlchemy connection's or a `BulkSession`'s: on
    PostgreSQL the row lock serialises concurrent writers, SQLite has one writer anyway. One
    statement when the sequence exists (an import's files: two round trips fewer each); else its
    row is created with ON CONFLICT DO NOTHING first, so two writers meeting a new sequence do not
    collide, and the update runs again. `above`: the first key is greater than it (a table that
    holds rows written without the sequence); the sequence moves past the keys returned.
    """
    run = conn.run if isinstance(conn, BulkSession) else _run_named(conn)
    update = "UPDATE sequences SET next_value = next_value + :n WHERE name = :name RETURNING next_value"
    rows = run(update, n=n, name=name)
    if not rows:  # a new sequence
        run("INSERT INTO sequences (name, next_value) VALUES (:name, 1) ON CONFLICT (name) DO NOTHING", name=name)
        rows = run(update, n=n, name=name)
    first = int(rows[0][0]) - n
    if first <= above:
        first = int(above) + 1
        run("UPDATE sequences SET next_value = :v WHERE name = :name", v=first + n, name=name)
    return first


def _run_named(conn: sa.Connection):  # noqa: ANN202 - the shape of BulkSession.run
    def run(sql: str, **params) -> list[tuple]:  # noqa: ANN003
        result = conn.execute(sa.text(sql), params)
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    return run


Schema = Mapping[str, "pl.DataType | type[pl.DataType]"]

# ADBC's SQLite driver types each result column from the values of its first batch of rows
# (1,024 by default): a column null there becomes Int64, and a later text value then fails
# the whole read ("Type mismatch in column"). Typing the columns from this many rows
# instead covers every table the batch, printing and extracts read in one batch.
_SQLITE_BATCH_ROWS = 1 << 24


def typed(frame: pl.DataFrame, schema: Schema, what: str = "query") -> pl.DataFrame:
    """`frame` with exactly the columns of `schema`, in its order, each of its type.

    Whatever each driver hands back becomes the declared type: SQLite's ISO text and
    PostgreSQL's dates become Date, integer flags become Boolean, PostgreSQL's `numeric`
    (a `SUM()`, as text) becomes Int64 or Float64, and a column with no values at all (which
    a driver types as it pleases, often Int64) is simply nulls of the declared type. A value
    that does not convert is a `StateError` naming `what`, the column and both types; it is
    never turned into a null.
    """
    missing = [c for c in schema if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema]
    if missing or extra:
        raise StateError(
            f"{what}: columns {frame.columns} do not match the expected {list(schema)} "
            f"(missing {missing}, unexpected {extra})"
        )
    if frame.height == 0:
        return pl.DataFrame(schema={c: (d() if isinstance(d, type) else d) for c, d in schema.items()})
    columns = []
    for name, dtype in schema.items():
        column = frame.get_column(name)
        try:
            columns.append(_convert(column, dtype() if isinstance(dtype, type) else dtype))
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise StateError(
                f"{what}: column {name!r} holds {column.dtype} values that are not {dtype}: {str(exc).splitlines()[0]}"
            ) from exc
    return pl.DataFrame(columns)


def _convert(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """One column as `dtype` (see `typed`); raises a polars error when a value does not fit."""
    source = column.dtype
    if source == dtype:
        return column
    if column.null_count() == column.len():
        return pl.Series(column.name, [None] * column.len(), dtype=dtype)
    if dtype == pl.Date:
        if source == pl.String:
            return iso_date(column)
        if isinstance(source, pl.Datetime):
            return column.dt.date()
    elif dtype == pl.Boolean and source.is_integer():
        return column != 0
    elif isinstance(dtype, pl.Datetime) and source == pl.String:
        return column.str.replace("T", " ").str.to_datetime(time_unit=dtype.time_unit or "us")
    elif dtype.is_integer() and source == pl.String:
        # PostgreSQL's numeric (a SUM) arrives as text, '12' or '12.00': whole numbers only
        return column.str.replace(r"\.0*$", "").cast(dtype, strict=True)
    elif dtype.is_integer() and source.is_float():
        if not (column.is_null() | (column == column.round(0))).all():
            raise ValueError(f"not a whole number: {column.filter(column != column.round(0))[0]!r}")
    return column.cast(dtype, strict=True)


def read_frame(conn: sa.Connection, sql: str, params: dict | None = None, *, schema: Schema) -> pl.DataFrame:
    """A query's result as a polars frame of exactly `schema` (see `typed`).

    For small and medium results through SQLAlchemy; bulk reads use `BulkSession.read`.
    """
    result = conn.execute(sa.text(sql), params or {})
    names = list(result.keys())
    rows = result.fetchall()
    try:
        frame = pl.DataFrame({name: pl.Series(name, [row[i] for row in rows]) for i, name in enumerate(names)})
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise StateError(f"{_what(sql)}: a column holds values of more than one type: {exc}") from exc
    return typed(frame, schema, _what(sql))


def _what(sql: str) -> str:
    text = " ".join(sql.split())
    return f"reading '{text[:90]}{'...' if len(text) > 90 else ''}'"


def _one_table(batch):  # noqa: ANN001, ANN202 - a pyarrow RecordBatch
    import pyarrow as pa

    return pa.Table.from_batches([batch])


def _arrow_storage(table):  # noqa: ANN001, ANN202 - a pyarrow Table
    """Extension columns (PostgreSQL's numeric comes as an opaque text extension) as their storage."""
    import pyarrow as pa

    columns = []
    changed = False
    for column in table.columns:
        if isinstance(column.type, pa.BaseExtensionType):
            column = pa.chunked_array([chunk.storage for chunk in column.chunks], type=column.type.storage_type)
            changed = True
        columns.append(column)
    return pa.table(columns, names=table.column_names) if changed else table


# the bulk session's SQLite page cache (KiB, as PRAGMA cache_size takes a negative number), and the
# small one of an append that rebuilds the indexes (`BulkSession.append`)
_BULK_CACHE_KIB = -524288
_SPILL_CACHE_KIB = -4096


def _ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class MissingReference(StateError):
    """Rows appended with `references_checked` name rows their foreign key's table does not hold:
    `values`, the missing keys (at most `_MISSING_SHOWN` of them are looked up)."""

    def __init__(self, table: str, column: str, values: list, referenced: str):
        shown = ", ".join(str(v) for v in values[:3]) + (f" and {len(values) - 3:,} more" if len(values) > 3 else "")
        super().__init__(f"{table}.{column} {shown}: no such row in {referenced.strip(chr(34))}")
        self.table, self.column, self.values = table, column, values


_MISSING_SHOWN = 1000
# `BulkSession._check_references` on PostgreSQL: at most this many values go as one array parameter;
# more (a file of a 1M chain's week names every customer) through a temporary table the planner counts
_ARRAY_VALUES = 10_000


# a :name placeholder (not PostgreSQL's ::type cast)
_PLACEHOLDER = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


class BulkSession:
    """One ADBC connection in one transaction: append Arrow frames, run SQL, commit.

    With `write=False` nothing is locked up front: a reader's consistent snapshot.
    """

    def __init__(self, url: str, write: bool = True, idle: _IdleConnection | None = None):
        self.url = url
        u = make_url(url)
        if u.get_backend_name() == "sqlite":
            import adbc_driver_sqlite.dbapi as driver

            if idle is None:
                idle = _IdleConnection(driver.connect(u.database or ":memory:", autocommit=True))
            self._conn = idle.conn
            self._cur = self._conn.cursor()
            self._cur.execute("PRAGMA busy_timeout=30000")
            # synchronous stays FULL here (not `connect`'s NORMAL): a compaction deletes the replaced
            # part files right after its commit, so that commit must be on disk before: a commit a
            # power cut undid would name files no longer there
            self._cur.execute("PRAGMA foreign_keys=OFF")  # validated before loading
            # a large page cache keeps the baskets' indexes in memory while a bulk load
            # inserts into them in random key order
            self._cur.execute(f"PRAGMA cache_size={_BULK_CACHE_KIB}")
            self._cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        else:
            import adbc_driver_postgresql.dbapi as driver

            if idle is None:
                libpq = u.set(drivername="postgresql").render_as_string(hide_password=False)
                idle = _IdleConnection(driver.connect(libpq))
            self._conn = idle.conn
            self._cur = self._conn.cursor()
        self.sqlite = u.get_backend_name() == "sqlite"
        # the connection with what its sessions keep (`_check_references`' temporary tables, and the rights
        # and foreign keys asked once a connection: an import's files ask once, not once a file)
        self._idle = idle

    def execute(self, sql: str, params: tuple | None = None) -> list[tuple]:
        """Run one statement (``?`` placeholders on SQLite, ``$1`` on PostgreSQL)."""
        self._cur.execute(sql, params)
        try:
            return self._cur.fetchall()
        except Exception:  # noqa: BLE001 - statements without a result set
            return []

    def run(self, sql: str, **params) -> list[tuple]:  # noqa: ANN003
        """`execute` with ``:name`` placeholders, as SQLAlchemy's text() takes them, on either database."""
        names = _PLACEHOLDER.findall(sql)
        if self.sqlite:  # ? binds by position: a name used twice is bound twice
            return self.execute(_PLACEHOLDER.sub("?", sql), tuple(params[n] for n in names))
        number = {n: i for i, n in enumerate(dict.fromkeys(names), start=1)}
        return self.execute(_PLACEHOLDER.sub(lambda m: f"${number[m.group(1)]}", sql), tuple(params[n] for n in number))

    def allocate_keys(self, name: str, n: int) -> int:
        """`allocate_keys` inside this bulk transaction."""
        return allocate_keys(self, name, n)

    def append(
        self,
        table: str,
        frame: pl.DataFrame,
        temporary: bool = False,
        rebuild_indexes: bool = False,
        references_checked: bool = False,
    ) -> None:
        """Append `frame`'s rows to `table`; `temporary`: a temporary table of this session, made on first use.

        `rebuild_indexes` (SQLite; ignored on PostgreSQL): the table's secondary indexes (those
        schema.sql creates by name; not the primary key's nor a UNIQUE constraint's) are dropped
        before the append and created again after it, in this transaction: for an append as large
        as the table, where creating an index (one sort) costs far less than inserting each row
        into it at a random place (1.5M baskets into two indexes: 1.6 s instead of ~6 s). A reader
        sees the indexes all the while (its snapshot predates the drop). On PostgreSQL a dropped
        index would lock the table against the checkout's readers until the commit: never done.

        `references_checked`: the caller has checked that every foreign key of `frame` names an
        existing row (as the import checks its files against the stores and customers it read).
        Since those were read before this transaction, the rows are checked again here, one
        statement per foreign key over its distinct values (`_check_references`; a missing one is a
        `MissingReference`): SQLite's bulk session has ``foreign_keys=OFF`` and holds the database's
        write lock, so the check holds until the commit. On PostgreSQL, which checks each inserted row
        with a trigger (226k baskets: ~2 s of the import's 4), the check locks the referenced rows as
        those triggers do (FOR KEY SHARE: nothing can remove them until the commit) and the rows go
        in with ``session_replication_role = replica`` (the triggers off for this append only), when
        the session may (`_reference_rights`: the parameter's privilege, UPDATE on the referenced
        tables as the lock needs, TEMP, no trigger of the table's own, no row security on the
        referenced tables); else the check locks nothing (it still names a missing row) and the
        triggers check every row as always.
        """
        if not frame.height:
            return
        skip = references_checked and not temporary and self._check_references(table, frame)
        if skip:
            self._cur.execute("SET LOCAL session_replication_role = replica")
        indexes = self._secondary_indexes(table) if rebuild_indexes and self.sqlite and not temporary else []
        for name, _ in indexes:
            self._cur.execute(f'DROP INDEX "{name}"')
        if indexes:
            # rows given in key order (as the import gives baskets) into a table without its secondary
            # indexes meet each page once: with a small cache SQLite writes the full pages to the WAL
            # as it inserts, in this (the inserting) thread, instead of all of them at the commit
            self._cur.execute(f"PRAGMA cache_size={_SPILL_CACHE_KIB}")
        try:
            self._cur.adbc_ingest(
                table, frame.rechunk().to_arrow(), mode="create_append" if temporary else "append", temporary=temporary
            )
        except BaseException:
            if skip:  # a failure before the COPY reached the server leaves the transaction alive: triggers back on
                with contextlib.suppress(Exception):
                    self._cur.execute("SET LOCAL session_replication_role = DEFAULT")
            raise
        if skip:
            self._cur.execute("SET LOCAL session_replication_role = DEFAULT")
        if indexes:  # the large cache again: CREATE INDEX's sort holds as much in memory as the cache
            self._cur.execute(f"PRAGMA cache_size={_BULK_CACHE_KIB}")
        for _, sql in indexes:
            self._cur.execute(sql)

    def _foreign_keys(self, table: str) -> list[tuple[str, str, str]] | None:
        """(column, referenced table as SQL, referenced column) of each foreign key of `table`; None
        when one spans several columns or names no column (not checked here: the database's own)."""
        if self.sqlite:
            rows = self.execute(f"PRAGMA foreign_key_list({_ident(table)})")  # id, seq, table, from, to, ...
            if any(to is None for *_, to, _u, _d, _m in rows):  # schema.sql names every key's column
                raise CodeError(f"a foreign key of {table} names no column: it would go unchecked")
            if any(seq for _, seq, *_ in rows):
                return None
            return [(column, _ident(referenced), to) for _, _, referenced, column, to, *_ in rows]
        rows = self.execute(
            "SELECT a.attname, c.confrelid::regclass::text, r.attname, cardinality(c.conkey) "
            "FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1] "
            f"WHERE c.contype = 'f' AND c.conrelid = {_quoted(_ident(table))}::regclass ORDER BY a.attname"
        )
        if any(n != 1 for *_, n in rows):
            return None
        return [(column, referenced, key) for column, referenced, key, _ in rows]

    def _reference_rights(self, table: str) -> tuple[bool, bool]:
        """(may check, may skip the triggers) of this PostgreSQL session appending to `table`.

        It may check the references when it may make temporary tables (TEMP) and no referenced table
        has row security (which the check's count would obey and the triggers do not). It may append with
        the triggers off, having locked what the foreign keys name, when it may also set
        session_replication_role (a superuser, or PostgreSQL 15+ with the parameter's SET
        privilege) and take FOR KEY SHARE locks on the referenced tables (UPDATE on a column of
        each), and `table` has no trigger but its keys' (replica mode would silence any other).
        """
        ((superuser, version, temp),) = self.execute(
            "SELECT current_setting('is_superuser') = 'on', current_setting('server_version_num')::int, "
            "has_database_privilege(current_database(), 'TEMP')"
        )
        ((others, hidden, unlockable),) = self.execute(
            "SELECT (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), "
            "(SELECT count(*) FROM pg_constraint k JOIN pg_class r ON r.oid = k.confrelid "
            "WHERE k.conrelid = c.oid AND k.contype = 'f' AND r.relrowsecurity), "
            "(SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f' "
            "AND NOT has_any_column_privilege(k.confrelid, 'UPDATE')) "
            f"FROM pg_class c WHERE c.oid = {_quoted(_ident(table))}::regclass"
        )
        check = bool(temp or superuser) and hidden == 0
        if not check or others or unlockable:
            return check, False
        if superuser:
            return True, True
        if version < 150000:
            return True, False
        ((allowed,),) = self.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
        return True, bool(allowed)

    def _check_references(self, table: str, frame: pl.DataFrame) -> bool:
        """Check that every foreign key value of `frame` names an existing row (`MissingReference`
        otherwise), one query per key over its distinct values (on PostgreSQL up to `_ARRAY_VALUES` of them
        as an array parameter, else copied to a temporary table); on
        PostgreSQL lock those rows (FOR KEY SHARE) when the triggers may be skipped
        (`_reference_rights`). Returns whether they may. Nothing is checked when a key spans
        columns or is not among `frame`'s columns, or on PostgreSQL without TEMP (the triggers do)."""
        check, skip = True, False
        if not self.sqlite:
            rights = self._idle.rights
            if table not in rights:
                rights[table] = self._reference_rights(table)
            check, skip = rights[table]
        known = self._idle.keys
        if check and table not in known:
            known[table] = self._foreign_keys(table)
        keys = known[table] if check else None
        if keys is None or any(column not in frame.columns for column, *_ in keys):
            return False
        for column, referenced, key in keys:
            values = frame.select(pl.col(column).drop_nulls().unique().alias("key"))
            if not values.height:
                continue
            params = None
            if not self.sqlite and values.height <= _ARRAY_VALUES:
                # few values (an import's file names ~1k customers): one array parameter, no temporary
                # table to empty, fill and join (with the keys and rights asked once: 22 -> 11 ms a file of the real panel)
                params, source = (values["key"].to_list(),), "unnest($1) AS s(key)"
            else:
                scratch = f"lw_refs_{table}_{column}"
                if scratch in self._idle.scratch:  # a check before (maybe one that failed) left its values
                    self.execute(f"DELETE FROM {_ident(scratch)}")
                self.append(scratch, values, temporary=True)  # made on first use
                self._idle.scratch.add(scratch)
                source = f"{_ident(scratch)} s"
            found = f"SELECT 1 FROM {referenced} r WHERE r.{_ident(key)} IN (SELECT s.key FROM {source})"
            missing = (
                f"SELECT s.key FROM {source} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {referenced} r WHERE r.{_ident(key)} = s.key) LIMIT {_MISSING_SHOWN}"
            )
            for _ in range(3):  # a row removed and added again while the lock waited: lock it again
                ((count,),) = self.execute(
                    f"SELECT count(*) FROM ({found}{' FOR KEY SHARE OF r' if skip else ''}) AS checked", params
                )
                if count == values.height:
                    break
                gone = self.execute(missing, params)
                if gone:
                    raise MissingReference(table, column, sorted(v for (v,) in gone), referenced)
            else:
                raise StateError(f"{table}.{column}: the rows it names in {referenced} kept changing; try again")
        return skip

    def _secondary_indexes(self, table: str) -> list[tuple[str, str]]:
        """(name, CREATE statement) of `table`'s named, non-unique indexes (SQLite)."""
        rows = self.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL "
            "AND sql NOT LIKE 'CREATE UNIQUE%' ORDER BY name",
            (table,),
        )
        return [(str(name), str(sql)) for name, sql in rows]

    def read(self, sql: str, schema: Schema | None = None) -> pl.DataFrame:
        """The result of `sql` as a polars frame of exactly `schema` (see `typed`).

        Product code always passes a schema (tests/engine/test_reads.py checks every call);
        ``None``, the driver's own types, is for tests and a look at a database by hand.
        """
        if self.sqlite:
            self._cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_SQLITE_BATCH_ROWS)})
        self._cur.execute(sql)
        frame = pl.from_arrow(_arrow_storage(self._cur.fetch_arrow_table()))
        return frame if schema is None else typed(frame, schema, _what(sql))

    def read_chunks(self, sql: str, schema: Schema, rows: int = 1 << 20) -> Iterator[pl.DataFrame]:
        """The result of `sql` in frames of about `rows` rows (each of exactly `schema`): for a large
        result its reader folds chunk by chunk (`engine.batch.home_stores`), never holding it whole."""
        if self.sqlite:
            self._cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(rows)})
        self._cur.execute(sql)
        what = _what(sql)
        try:
            for batch in self._cur.fetch_record_batch():
                yield typed(pl.from_arrow(_arrow_storage(_one_table(batch))), schema, what)
        finally:
            if self.sqlite:
                self._cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_SQLITE_BATCH_ROWS)})

    def commit(self) -> None:
        if self.sqlite:
            self._cur.execute("COMMIT")
        else:
            self._conn.commit()

    def rollback(self) -> None:
        if self.sqlite:
            with contextlib.suppress(Exception):
                self._cur.execute("ROLLBACK")
        else:
            self._conn.rollback()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cur.close()
        self._conn.close()

    def detach(self) -> _IdleConnection:
        """This committed session's connection, for the next session (`Gateway.bulk`)."""
        with contextlib.suppress(Exception):
            self._cur.close()
        return self._idle


@dataclass
class _IdleConnection:
    """An ADBC connection between two bulk sessions of one `Gateway`, with the temporary tables made
    on it (`BulkSession._scratch`) and what its sessions asked of the catalogue (`_rights`, `_keys`), for
    the command's life: a grant revoked meanwhile fails its next append (the SET or the lock is refused);
    a trigger added to the table meanwhile is seen by the next command (this one skips it with the
    keys'). PostgreSQL: a connection is ~60 ms (the driver reads the server's types; as long with trust
    authentication as with SCRAM). SQLite: closing the last connection to a file checkpoints its WAL (~5 ms a transaction of an
    import's 120k-line file)."""

    conn: Any
    scratch: set[str] = field(default_factory=set)
    rights: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    keys: dict[str, list[tuple[str, str, str]] | None] = field(default_factory=dict)


@contextlib.contextmanager
def bulk_session(url: str, write: bool = True, idle: list[_IdleConnection] | None = None) -> Iterator[BulkSession]:
    """A `BulkSession` that commits on success and rolls back on any error.

    `idle`: connections to take one from, and to give it back to once committed (a session that
    rolled back closes its own: its temporary tables went with the transaction).
    """
    session = BulkSession(url, write, idle.pop() if idle else None)
    try:
        yield session
        session.commit()
    except BaseException:
        try:
            session.rollback()
        finally:  # closed even when the rollback fails (a connection the server dropped)
            session.close()
        raise
    if idle is None:
        session.close()
    else:
        idle.append(session.detach())


_IDLE_CONNECTIONS = 2  # a Gateway's connections kept between bulk sessions


def _close_all(connections: list[_IdleConnection]) -> None:
    for connection in connections:
        with contextlib.suppress(Exception):
            connection.conn.close()


# ---------------------------------------------------------------- the tables commands read as frames

PRODUCT_SCHEMA: Schema = {
    "product_key": pl.Int64,
    "sku": pl.String,
    "description": pl.String,
    "category": pl.String,
    "department": pl.String,
    "brand": pl.String,
    "brand_type": pl.String,
    "manufacturer_id": pl.String,
    "size": pl.String,
    "regular_price_cents": pl.Int64,
    "unit_cost_cents": pl.Int64,
}
CUSTOMER_SCHEMA: Schema = {
    "customer_key": pl.Int64,
    "customer_id": pl.String,
    "household_size": pl.Int64,
    "opted_out": pl.Boolean,
    "joined_on": pl.Date,
    "has_card": pl.Boolean,
}
LINE_SCHEMA: Schema = {
    "customer_key": pl.Int64,
    "basket_key": pl.Int64,
    "day": pl.Date,
    "product_key": pl.Int64,
    "quantity": pl.Float64,
    "amount_cents": pl.Int64,
    "discount_cents": pl.Int64,
}
HISTORY_COLUMNS = [
    "customer_key",
    "basket_key",
    "day",
    "product_key",
    "sku",
    "category",
    "department",
    "brand",
    "brand_type",
    "manufacturer_id",
    "quantity",
    "amount_cents",
    "discount_cents",
    "regular_price_cents",
    "unit_cost_cents",
]
DEAL_SCHEMA: Schema = {
    "deal_id": pl.String,
    "manufacturer_id": pl.String,
    "sku": pl.String,
    "category": pl.String,
    "brand": pl.String,
    "kind": pl.String,
    "value_cents": pl.Int64,
    "percent_bp": pl.Int64,
    "funded_share": pl.Float64,
    "starts_on": pl.Date,
    "ends_on": pl.Date,
    "budget_cents": pl.Int64,
    "max_per_customer": pl.Int64,
    "target_cells": pl.String,
}
_BATCH_SCHEMA: Schema = {
    "batch_id": pl.Int64,
    "period_start": pl.Date,
    "period_end": pl.Date,
    "status": pl.String,
    "summary_json": pl.String,
}


# a line's product attributes in history (HISTORY_COLUMNS' order): what `with_products` joins
PRODUCT_ATTRIBUTES = tuple(c for c in HISTORY_COLUMNS if c in PRODUCT_SCHEMA and c != "product_key")


def with_products(
    lines: pl.DataFrame, products: pl.DataFrame, sort: bool = True, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """Line items (LINE_SCHEMA) with their product's attributes: HISTORY_COLUMNS, sorted by
    customer_key, day, basket_key (`sort`; else in the order of `lines`).

    `columns`: only these of HISTORY_COLUMNS, in this order (only their attributes are joined: a
    partition's stage needs two of the six text columns, and each is gathered for every line).
    """
    columns = list(HISTORY_COLUMNS if columns is None else columns)
    wanted = [c for c in PRODUCT_ATTRIBUTES if c in columns]
    # no attribute asked for: no join (the lines need not even hold product_key: `line_columns`)
    joined = (
        lines.join(products.select("product_key", *wanted), on="product_key", how="left", maintain_order="left")
        if wanted
        else lines
    )
    if sort:
        joined = joined.sort("customer_key", "day", "basket_key")
    return joined.select(columns)


class Gateway:
    """One command's way into the database: its connections, and the typed reads they share.

    A command builds one, once (``Gateway(settings.database_url)``, or `of`), and passes it
    down instead of the URL. It owns the SQLAlchemy engine (made on first use) and opens the
    ADBC bulk sessions, keeping the SQLite rule of the module docstring in one place: on
    SQLite a bulk session is refused while one of its SQLAlchemy connections is open (and the
    reverse), and the engine's pool is emptied before a bulk session opens.

    The readers return frames of a fixed schema (`typed`). Each opens a read-only bulk
    session of its own, unless called inside ``with db.reading():``, where they share one.

    Use it as a context manager, or call `close`; a Gateway made with `wrap` around an engine
    the caller owns leaves that engine to the caller.

    Examples
    --------
    >>> with Gateway("sqlite:///listwise.db") as db:                   # doctest: +SKIP
    ...     db.require()
    ...     with db.reading():
    ...         products, customers = db.products(), db.customers()
    """

    def __init__(self, url: str, pooled: bool = False):
        self.url = url
        self.sqlite = is_sqlite(url)
        self._pooled = pooled
        self._engine: sa.Engine | None = None
        self._owned = True
        self._open_connections = 0
        self._open_bulk = 0
        self._reader: BulkSession | None = None
        self._store: HistoryStore | None = None
        self._idle: list[_IdleConnection] = []  # bulk sessions' connections between sessions
        self._idle_lock = threading.Lock()
        self._keeping = 0  # SQLite: inside `keeping` (bulk sessions keep their connections)

    @classmethod
    def of(cls, source: Gateway | sa.Engine | str) -> Gateway:
        """`source` itself if it is a Gateway, else one around an engine (`wrap`) or a URL."""
        if isinstance(source, Gateway):
            return source
        if isinstance(source, sa.Engine):
            return cls.wrap(source)
        return cls(source)

    @classmethod
    @contextlib.contextmanager
    def using(cls, source: Gateway | sa.Engine | str) -> Iterator[Gateway]:
        """`of(source)` for the length of a call: a Gateway made here is closed after it, the
        caller's own (or one around the caller's engine) is left as it was."""
        db = cls.of(source)
        try:
            yield db
        finally:
            if db is not source:
                db.close()

    @classmethod
    def wrap(cls, engine: sa.Engine) -> Gateway:
        """A Gateway over an engine the caller made and will dispose of."""
        db = cls(engine.url.render_as_string(hide_password=False))
        db._engine, db._owned = engine, False
        return db

    # ------------------------------------------------------------ connections

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (`connect`), made on first use."""
        if self._engine is None:
            self._engine = connect(self.url, self._pooled)
        return self._engine

    def require(self) -> Gateway:
        """`StateError` unless this is an initialised database (`require_schema`); returns self.

        A SQLite file that does not exist is refused before anything connects (connecting
        would create an empty file); a database that cannot be opened is a one-line error.
        """
        try:
            require_schema(self.engine)
        except sa.exc.OperationalError as exc:
            raise StateError(f"database {shown(self.url)} cannot be opened: {str(exc.orig).splitlines()[0]}") from exc
        return self

    @contextlib.contextmanager
    def _sqlalchemy(self) -> Iterator[None]:
        if self.sqlite and self._open_bulk:
            raise RuntimeError("a SQLAlchemy connection to SQLite while a bulk session is open (engine/db.py)")
        if self.sqlite:  # the other copy of SQLite must not have the file open (the module docstring)
            self._close_idle()
        self._open_connections += 1
        try:
            yield
        finally:
            self._open_connections -= 1

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A SQLAlchemy connection (reads; a write commits with ``conn.commit()``)."""
        with self._sqlalchemy(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def begin(self, immediate: bool = False) -> Iterator[sa.Connection]:
        """A SQLAlchemy transaction, committed on success; `immediate`: SQLite takes the write lock first."""
        engine = self.engine.execution_options(sqlite_begin="IMMEDIATE") if immediate else self.engine
        with self._sqlalchemy(), engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def bulk(self, write: bool = True) -> Iterator[BulkSession]:
        """A `bulk_session`: committed on success, rolled back on any error.

        On SQLite, the engine's pool is emptied first, and a SQLAlchemy connection of this
        Gateway still open is an error (the module docstring says why).
        """
        if self.sqlite:
            if self._open_connections:
                raise RuntimeError("a bulk session on SQLite while a SQLAlchemy connection is open (engine/db.py)")
            if self._engine is not None:
                self._engine.dispose()
        self._open_bulk += 1
        idle = None
        if not self.sqlite or self._keeping:  # one idle connection to this session: another thread's has its own
            with self._idle_lock:
                idle = [self._idle.pop()] if self._idle else []
        try:
            with bulk_session(self.url, write, idle) as session:
                yield session
        finally:
            self._open_bulk -= 1
            if idle:
                with self._idle_lock:
                    self._idle.extend(idle)
                    idle, self._idle = self._idle[_IDLE_CONNECTIONS:], self._idle[:_IDLE_CONNECTIONS]
                _close_all(idle)  # more than are kept (sessions of several threads at once)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Gateway]:
        """The readers called inside share one read-only bulk session (one transaction)."""
        if self._reader is not None:
            yield self
            return
        with self.bulk(write=False) as session:
            self._reader = session
            try:
                yield self
            finally:
                self._reader = None

    @contextlib.contextmanager
    def keeping(self) -> Iterator[Gateway]:
        """On SQLite, bulk sessions inside keep their connection for the next one, as on PostgreSQL
        always: closing the last connection to the file checkpoints its WAL (an import's 11 files:
        13 sessions, ~5 ms each). Closed at the end, or before a SQLAlchemy connection of this
        Gateway opens (the module docstring's rule); code inside must not use `engine` directly."""
        self._keeping += 1
        try:
            yield self
        finally:
            self._keeping -= 1
            if self.sqlite and not self._keeping:
                self._close_idle()

    def _close_idle(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        _close_all(idle)

    def close(self) -> None:
        """Dispose of the engine (unless `wrap`ped: its owner does) and close the idle bulk connections."""
        self._close_idle()
        if self._engine is not None and self._owned:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ typed readers

    def read(self, sql: str, schema: Schema) -> pl.DataFrame:
        """A query's result through ADBC, as a frame of exactly `schema` (see `typed`)."""
        if self._reader is not None:
            return self._reader.read(sql, schema)
        with self.bulk(write=False) as session:
            return session.read(sql, schema)

    def read_chunks(self, sql: str, schema: Schema, rows: int = 1 << 20) -> Iterator[pl.DataFrame]:
        """A large result in frames of about `rows` rows (`BulkSession.read_chunks`)."""
        if self._reader is not None:
            yield from self._reader.read_chunks(sql, schema, rows)
            return
        with self.bulk(write=False) as session:
            yield from session.read_chunks(sql, schema, rows)

    def read_small(self, sql: str, schema: Schema) -> pl.DataFrame:
        """A small result (a row, a few) as a frame of exactly `schema` (see `typed`).

        Through the open `reading` session if there is one, else a SQLAlchemy connection
        (no ADBC session opened for one row).
        """
        if self._reader is not None:
            return self._reader.read(sql, schema)
        with self.connect() as conn:
            return read_frame(conn, sql, schema=schema)

    def products(self) -> pl.DataFrame:
        """The catalogue: PRODUCT_SCHEMA (money in cents), by product_key."""
        return self.read(f"SELECT {', '.join(PRODUCT_SCHEMA)} FROM products ORDER BY product_key", PRODUCT_SCHEMA)

    def customers(self) -> pl.DataFrame:
        """Columns: customer_key, customer_id, household_size, opted_out (bool), joined_on, has_card (bool).

        No names, addresses, card numbers or e-mails: only whether a card exists.
        """
        return self.read(
            "SELECT customer_key, customer_id, household_size, opted_out, joined_on, "
            "CASE WHEN card_number IS NULL THEN 0 ELSE 1 END AS has_card "
            "FROM customers ORDER BY customer_key",
            CUSTOMER_SCHEMA,
        )

    def history_store(self) -> HistoryStore:
        """Where this database's Parquet history lives and its bucket count (`engine.history_store`)."""
        from engine.history_store import HistoryStore

        if self._store is None:
            found = self.read_small("SELECT buckets, path FROM history_store", {"buckets": pl.Int64, "path": pl.String})
            if found.height == 0:
                raise StateError(f"database {shown(self.url)} has no history store: run 'listwise init'")
            self._store = HistoryStore.locate(self.url, found["path"][0], found["buckets"][0])
        return self._store

    def history(
        self,
        end: dt.date,
        start: dt.date | None = None,
        products: pl.DataFrame | None = None,
        partition: tuple[int, int] | None = None,
    ) -> pl.DataFrame:
        """Line items of card holders' baskets (not voided) with day in [start, end).

        Columns: HISTORY_COLUMNS — customer_key, basket_key, day (Date), product_key, sku,
        category, department, brand, brand_type, manufacturer_id, quantity (Float64, negative =
        return), amount_cents, discount_cents, regular_price_cents, unit_cost_cents. Sorted by
        customer_key, day, basket_key. `products`: the catalogue already read (else read here).
        `partition` (p, n): only the customers with customer_key % n == p (n divides the store's
        buckets). The imported lines come from the Parquet part files the manifest names, the
        checkout's from basket_lines (`db_lines`), in one read transaction.
        """
        from engine.history_store import MIXED, card_holders, part_files, read_parts, to_history

        outer = self._reader is not None  # the caller's snapshot: a retry would list the same files
        for attempt in range(3):
            # the files listed and the checkout's lines in one snapshot; a retry takes a new one (an
            # SQLite snapshot still names the files a compaction swapped since)
            with self.reading():
                files = part_files(self, partition, end, start)
                # a file of every bucket holds other partitions' lines
                where = card_holders(partition) if any(b == MIXED for _, b in files) else None
                try:
                    parts = read_parts([path for path, _ in files], end, start, where=where)
                except FileNotFoundError:  # a compaction swapped the files after they were listed
                    if attempt == 2 or outer:
                        raise
                    continue
                held = self.db_lines(end, start, partition)
                catalogue = products if products is not None else self.products()
            return to_history(pl.concat([parts, held]) if held.height else parts, catalogue)
        raise CodeError("unreachable")

    def db_lines(
        self, end: dt.date, start: dt.date | None = None, partition: tuple[int, int] | None = None
    ) -> pl.DataFrame:
        """The card holders' lines the database holds (basket_lines: the checkout's baskets, not
        voided) with day in [start, end), of partition (p, n) (None: all), unsorted.

        Columns: `engine.history_store.PART_SCHEMA`'s (LINE_SCHEMA and line_no), as `read_parts`
        returns the Parquet parts' lines: a worker concatenates the two (`to_history`).
        """
        from engine.history_store import PART_SCHEMA, partition_buckets

        where = [f"l.day < '{end.isoformat()}'", "l.customer_key IS NOT NULL"]
        if start:
            where.append(f"l.day >= '{start.isoformat()}'")
        if partition is not None:
            partition_buckets(self.history_store().buckets, partition)  # validates (p, n)
            where.append(f"l.customer_key % {int(partition[1])} = {int(partition[0])}")
        sql = (
            f"SELECT {', '.join('l.' + c for c in PART_SCHEMA)} FROM basket_lines l "
            f"WHERE {' AND '.join(where)} "
            "AND l.basket_key NOT IN (SELECT basket_key FROM baskets WHERE voided = 1)"
        )
        return self.read(sql, PART_SCHEMA)

    def deals(self) -> pl.DataFrame:
        """Every deal: DEAL_SCHEMA (value and budget in cents, percent in basis points)."""
        return self.read(f"SELECT {', '.join(DEAL_SCHEMA)} FROM deals", DEAL_SCHEMA)

    def batches(self, status: str | None = "done") -> pl.DataFrame:
        """batch_id, period_start, period_end, status, summary_json of the batches in `status`
        (None: all), by period_start."""
        where = "" if status is None else f" WHERE status = {_quoted(status)}"
        return self.read(f"SELECT {', '.join(_BATCH_SCHEMA)} FROM batches{where} ORDER BY period_start", _BATCH_SCHEMA)

    def batch(self, batch_id: int) -> dict | None:
        """One batch's row (batch_id, period_start, period_end as dates, status, summary_json), or None."""
        rows = self.read_small(
            f"SELECT {', '.join(_BATCH_SCHEMA)} FROM batches WHERE batch_id = {int(batch_id)}", _BATCH_SCHEMA
        )
        return rows.row(0, named=True) if rows.height else None

    def latest_batch(self, status: str = "done") -> int | None:
        """The id of the last batch in `status` (the highest id), or None."""
        found = self.read_small(
            f"SELECT MAX(batch_id) AS b FROM batches WHERE status = {_quoted(status)}", {"b": pl.Int64}
        )
        return found["b"][0]

    def last_purchase_day(self, before: dt.date | None = None) -> dt.date | None:
        """The day of the last basket recorded (before `before`, when given), or None."""
        where = f" WHERE day < '{before.isoformat()}'" if before else ""
        found = self.read_small(f"SELECT MAX(day) AS d FROM baskets{where}", {"d": pl.Date})
        return found["d"][0]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
