"""Database access: SQLAlchemy for the schema and point operations, ADBC for bulk.

The same `schema.sql` serves SQLite (the embedded default) and PostgreSQL. Bulk paths
move Arrow tables through ADBC (about 1M rows/s into SQLite here, COPY into PostgreSQL)
instead of row-by-row inserts; everything else goes through SQLAlchemy Core.

One rule for SQLite: the ADBC driver carries its own copy of the SQLite library, and two
copies in one process must never have the same file open at once (POSIX locks are per
process: one copy closing its descriptor drops the other's locks, and SQLite reports a
"disk I/O error"). So SQLite engines use NullPool — no idle connection lingers — and code
closes its SQLAlchemy connection before it opens a bulk session. Separate processes (the
checkout service beside a batch) are safe: each has one copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Iterator, Mapping

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from engine.errors import StateError

__all__ = [
    "connect", "init_schema", "schema_statements", "allocate_keys", "bulk_session",
    "read_frame", "typed", "Schema", "utc_now", "is_sqlite", "require_schema", "require_database", "shown",
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
        u = u.set(drivername="postgresql+psycopg")   # psycopg 3 is the driver we ship
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
    elif is_sqlite(url):      # a process that never opens ADBC (the checkout service)
        engine = sa.create_engine(_normalise(url), poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=28,
                                  pool_timeout=30)
    else:
        engine = sa.create_engine(_normalise(url), pool_pre_ping=True)
    if is_sqlite(engine):
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001 - DB-API connection
            dbapi_conn.isolation_level = None      # we issue BEGIN ourselves
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


def init_schema(engine: sa.Engine) -> None:
    """Create every table and index (idempotent)."""
    with engine.begin() as conn:
        for statement in schema_statements():
            conn.exec_driver_sql(statement)
        # columns added after a database was first created (CREATE TABLE IF NOT EXISTS keeps the old table)
        have = {c["name"] for c in sa.inspect(conn).get_columns("baskets")}
        for column, sql_type in _ADDED_COLUMNS["baskets"]:
            if column not in have:
                conn.exec_driver_sql(f"ALTER TABLE baskets ADD COLUMN {column} {sql_type}")


# table -> columns a later version added, as (name, type): `init_schema` adds them to an older database
_ADDED_COLUMNS = {"baskets": [("line_count", "INTEGER"), ("line_sum", "BIGINT")]}


def require_schema(engine: sa.Engine) -> None:
    """`StateError` unless `listwise init` has run against this database.

    A SQLite file that does not exist is refused before anything connects, so no command
    but `init` ever leaves an empty database file behind.
    """
    u = engine.url
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
            and not u.database.startswith("file:") and not Path(u.database).is_file():
        raise StateError(f"database {u.render_as_string(hide_password=True)} does not exist: "
                         "run 'listwise init' first")
    if not sa.inspect(engine).has_table("sequences"):
        raise StateError(f"database {engine.url.render_as_string(hide_password=True)} is not "
                         "initialised: run 'listwise init' first")


def shown(url: str) -> str:
    """`url` as it may be printed: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def require_database(url: str) -> None:
    """`StateError` unless `url` is an initialised database; a read-only command calls this first.

    A SQLite file that does not exist is refused before anything connects (connecting would
    create an empty file).
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
            and not u.database.startswith("file:") and not Path(u.database).is_file():
        raise StateError(f"database {shown(url)} does not exist: run 'listwise init' first")
    engine = connect(url)
    try:
        require_schema(engine)
    except sa.exc.OperationalError as exc:
        raise StateError(f"database {shown(url)} cannot be opened: {str(exc.orig).splitlines()[0]}") from exc
    finally:
        engine.dispose()


def allocate_keys(conn: sa.Connection, name: str, n: int) -> int:
    """Reserve `n` consecutive keys of sequence `name`; returns the first.

    Runs inside the caller's transaction: on PostgreSQL the row lock serialises
    concurrent writers, SQLite has one writer anyway. The sequence row is created with
    ON CONFLICT DO NOTHING first, so two writers meeting a new sequence do not collide.
    """
    conn.execute(sa.text("INSERT INTO sequences (name, next_value) VALUES (:name, 1) ON CONFLICT (name) DO NOTHING"),
                 {"name": name})
    row = conn.execute(
        sa.text("UPDATE sequences SET next_value = next_value + :n WHERE name = :name RETURNING next_value"),
        {"n": n, "name": name},
    ).one()
    return int(row[0]) - n


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
        raise StateError(f"{what}: columns {frame.columns} do not match the expected {list(schema)} "
                         f"(missing {missing}, unexpected {extra})")
    if frame.height == 0:
        return pl.DataFrame(schema={c: (d() if isinstance(d, type) else d) for c, d in schema.items()})
    columns = []
    for name, dtype in schema.items():
        column = frame.get_column(name)
        try:
            columns.append(_convert(column, dtype() if isinstance(dtype, type) else dtype))
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise StateError(f"{what}: column {name!r} holds {column.dtype} values that are not "
                             f"{dtype}: {str(exc).splitlines()[0]}") from exc
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
            return column.str.slice(0, 10).str.to_date("%Y-%m-%d")
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


def read_frame(conn: sa.Connection, sql: str, params: dict | None = None, *,
               schema: Schema) -> pl.DataFrame:
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


class BulkSession:
    """One ADBC connection in one transaction: append Arrow frames, run SQL, commit.

    With `write=False` nothing is locked up front: a reader's consistent snapshot.
    """

    def __init__(self, url: str, write: bool = True):
        self.url = url
        u = make_url(url)
        if u.get_backend_name() == "sqlite":
            import adbc_driver_sqlite.dbapi as driver
            self._conn = driver.connect(u.database or ":memory:", autocommit=True)
            self._cur = self._conn.cursor()
            self._cur.execute("PRAGMA busy_timeout=30000")
            self._cur.execute("PRAGMA foreign_keys=OFF")   # validated before loading
            # a large page cache keeps the baskets' indexes in memory while a bulk load
            # inserts into them in random key order
            self._cur.execute("PRAGMA cache_size=-524288")
            self._cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        else:
            import adbc_driver_postgresql.dbapi as driver
            libpq = u.set(drivername="postgresql").render_as_string(hide_password=False)
            self._conn = driver.connect(libpq)
            self._cur = self._conn.cursor()
        self._sqlite = u.get_backend_name() == "sqlite"

    def execute(self, sql: str, params: tuple | None = None) -> list[tuple]:
        """Run one statement (``?`` placeholders on SQLite, ``$1`` on PostgreSQL)."""
        self._cur.execute(sql, params)
        try:
            return self._cur.fetchall()
        except Exception:  # noqa: BLE001 - statements without a result set
            return []

    def allocate_keys(self, name: str, n: int) -> int:
        """`allocate_keys` inside this bulk transaction."""
        mark = (lambda i: "?") if self._sqlite else (lambda i: f"${i}")
        self.execute(f"INSERT INTO sequences (name, next_value) VALUES ({mark(1)}, 1) "
                      "ON CONFLICT (name) DO NOTHING", (name,))
        rows = self.execute(f"UPDATE sequences SET next_value = next_value + {mark(1)} WHERE name = {mark(2)} "
                            "RETURNING next_value", (n, name))
        return int(rows[0][0]) - n

    def append(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height:
            self._cur.adbc_ingest(table, frame.rechunk().to_arrow(), mode="append")

    def read(self, sql: str, schema: Schema | None = None) -> pl.DataFrame:
        """The result of `sql` as a polars frame of exactly `schema` (see `typed`).

        Product code always passes a schema (tests/engine/test_reads.py checks every call);
        ``None``, the driver's own types, is for tests and a look at a database by hand.
        """
        if self._sqlite:
            self._cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_SQLITE_BATCH_ROWS)})
        self._cur.execute(sql)
        frame = pl.from_arrow(_arrow_storage(self._cur.fetch_arrow_table()))
        return frame if schema is None else typed(frame, schema, _what(sql))

    def commit(self) -> None:
        if self._sqlite:
            self._cur.execute("COMMIT")
        else:
            self._conn.commit()

    def rollback(self) -> None:
        if self._sqlite:
            with contextlib.suppress(Exception):
                self._cur.execute("ROLLBACK")
        else:
            self._conn.rollback()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cur.close()
        self._conn.close()


@contextlib.contextmanager
def bulk_session(url: str, write: bool = True) -> Iterator[BulkSession]:
    """A `BulkSession` that commits on success and rolls back on any error."""
    session = BulkSession(url, write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
