import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import allocate_keys, bulk_session, connect, init_schema, schema_statements


def test_schema_creates_every_table_on_both_databases(db_url):
    tables = set(sa.inspect(connect(db_url)).get_table_names())
    assert {"customers", "products", "baskets", "basket_lines", "lists", "offers", "redemptions"} <= tables


def test_schema_is_idempotent(db_url):
    engine = connect(db_url)
    init_schema(engine)  # second time: nothing changes, no error
    assert len(schema_statements()) > 20


def test_init_drops_the_index_of_baskets_by_customer_an_older_database_has(db_url):
    engine = connect(db_url)
    init_schema(engine)
    with engine.begin() as conn:  # as an older version created it
        conn.exec_driver_sql("CREATE INDEX ix_baskets_customer ON baskets (customer_key, day)")
    assert "ix_baskets_customer" in {ix["name"] for ix in sa.inspect(engine).get_indexes("baskets")}
    init_schema(engine)
    names = {ix["name"] for ix in sa.inspect(engine).get_indexes("baskets")}
    assert "ix_baskets_day" in names and "ix_baskets_customer" not in names
    engine.dispose()


def test_allocated_keys_never_overlap(db_url):
    engine = connect(db_url)
    with engine.begin() as conn:
        first = allocate_keys(conn, "baskets", 10)
        second = allocate_keys(conn, "baskets", 5)
    assert (first, second) == (1, 11)


def test_bulk_session_rolls_back_on_error(db_url):
    import polars as pl

    frame = pl.DataFrame({"store_id": ["S1"], "name": ["One"]})
    try:
        with bulk_session(db_url) as bulk:
            bulk.append("stores", frame)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with connect(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stores")).scalar() == 0
    with bulk_session(db_url) as bulk:
        bulk.append("stores", frame)
    with connect(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM stores")).scalar() == "One"


def _baskets(keys: range, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "basket_key": list(keys),
            "store_id": ["S1"] * len(ids),
            "basket_id": ids,
            "customer_key": [None] * len(ids),
            "ts": ["2025-01-06T10:00:00.000000"] * len(ids),
            "day": ["2025-01-06"] * len(ids),
            "source": ["import"] * len(ids),
        },
        schema_overrides={"customer_key": pl.Int64},
    )


def test_an_append_that_rebuilds_the_indexes_leaves_them_as_they_were_and_keeps_the_unique_key(sqlite_url):
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'baskets' ORDER BY name"
    with bulk_session(sqlite_url) as bulk:
        bulk.append("stores", pl.DataFrame({"store_id": ["S1"], "name": ["One"]}))
        before = bulk.execute(indexes)
        bulk.append("baskets", _baskets(range(1, 4), ["B1", "B2", "B3"]), rebuild_indexes=True)
        assert bulk.execute(indexes) == before
        assert {n for n, _ in before} >= {"ix_baskets_day"}  # what was rebuilt
        # the query planner uses the rebuilt index: it holds the rows appended
        assert bulk.execute("SELECT COUNT(*) FROM baskets INDEXED BY ix_baskets_day WHERE day = '2025-01-06'") == [(3,)]
    with pytest.raises(Exception, match="UNIQUE"):  # (store_id, basket_id) is still refused twice
        with bulk_session(sqlite_url) as bulk:
            bulk.append("baskets", _baskets(range(10, 12), ["B4", "B2"]), rebuild_indexes=True)
    with connect(sqlite_url).connect() as conn:  # the failed append left nothing, indexes included
        assert conn.execute(sa.text("SELECT COUNT(*) FROM baskets")).scalar() == 3
        assert [tuple(r) for r in conn.execute(sa.text(indexes))] == before


# ------------------------------------------------------------------ one key allocation, one gateway


def test_keys_drawn_in_bulk_and_through_sqlalchemy_come_from_one_sequence(db_url):
    from engine.db import Gateway

    with Gateway(db_url) as db:
        with db.begin() as conn:
            assert allocate_keys(conn, "lists", 3) == 1  # 1, 2, 3
        with db.bulk() as bulk:
            assert allocate_keys(bulk, "lists", 4) == 4  # 4..7
            assert bulk.allocate_keys("lists", 1) == 8
        with db.begin() as conn:
            assert allocate_keys(conn, "lists", 1) == 9
            assert allocate_keys(conn, "offers", 2) == 1  # another sequence starts at 1


def test_keys_asked_above_a_table_s_highest_move_the_sequence_past_it(db_url):
    with connect(db_url).begin() as conn:
        assert allocate_keys(conn, "lists", 1, above=41) == 42  # lists 1..41 were written by hand
        assert allocate_keys(conn, "lists", 2) == 43
        assert allocate_keys(conn, "lists", 1, above=10) == 45  # already past: `above` changes nothing


def test_the_gateway_never_has_sqlalchemy_and_adbc_on_one_sqlite_file_at_once(sqlite_url):
    from engine.db import Gateway

    with Gateway(sqlite_url) as db:
        with db.connect():
            with pytest.raises(RuntimeError, match="SQLAlchemy connection is open"):
                with db.bulk(write=False):
                    pass
        with db.bulk(write=False):
            with pytest.raises(RuntimeError, match="while a bulk session is open"):
                with db.connect():
                    pass
        with db.bulk(write=False) as bulk:  # each closed: both work again
            assert bulk.read("SELECT COUNT(*) AS n FROM stores", {"n": pl.Int64})["n"][0] == 0
        with db.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM stores")).scalar() == 0


def _temporary_table_seen(db) -> bool:  # noqa: ANN001
    """Whether this bulk session's connection is the one that made `lw_probe` (temporary tables are a connection's)."""
    with db.bulk(write=False) as bulk:
        return bool(bulk.execute("SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'lw_probe'")[0][0])


def test_inside_keeping_sqlite_bulk_sessions_share_one_connection_and_outside_each_has_its_own(sqlite_url):
    from engine.db import Gateway

    with Gateway(sqlite_url) as db:
        with db.keeping():
            with db.bulk() as bulk:
                bulk.execute("CREATE TEMP TABLE lw_probe (x INTEGER)")
            assert _temporary_table_seen(db)  # the same connection: its temporary table is there
            with db.connect():  # a SQLAlchemy connection closes the kept one first
                pass
            assert not _temporary_table_seen(db)
            with db.bulk() as bulk:
                bulk.execute("CREATE TEMP TABLE lw_probe (x INTEGER)")
        assert not _temporary_table_seen(db)  # closed at the end of `keeping`
        with db.bulk() as bulk:
            bulk.execute("CREATE TEMP TABLE lw_probe (x INTEGER)")
        assert not _temporary_table_seen(db)  # outside: a connection a session


def test_sqlalchemy_writes_between_kept_bulk_sessions_are_all_kept(sqlite_url):
    """The two copies of SQLite never have the file open at once (engine/db.py): with the kept ADBC
    connection left open while SQLAlchemy's opened and closed the file, about half of these rows were
    lost (31 of 60 here)."""
    from engine.db import Gateway

    with Gateway(sqlite_url) as db, db.keeping():
        for i in range(30):
            with db.bulk() as bulk:
                bulk.execute("INSERT INTO stores (store_id, name) VALUES (?, 'bulk')", (f"A{i}",))
            with db.begin() as conn:
                conn.execute(sa.text("INSERT INTO stores (store_id, name) VALUES (:s, 'sqlalchemy')"), {"s": f"B{i}"})
        with db.bulk(write=False) as bulk:
            assert bulk.execute("SELECT COUNT(*) FROM stores") == [(60,)]
            assert bulk.execute("PRAGMA integrity_check") == [("ok",)]
    with connect(sqlite_url).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM stores")).scalar() == 60


def test_readers_inside_one_reading_share_one_bulk_session(db_url, monkeypatch):
    import engine.db
    from engine.db import CUSTOMER_SCHEMA, HISTORY_COLUMNS, PRODUCT_SCHEMA, Gateway

    opened = []
    real = engine.db.BulkSession.__init__
    monkeypatch.setattr(
        engine.db.BulkSession, "__init__", lambda self, *a, **k: opened.append(1) or real(self, *a, **k)
    )
    with Gateway(db_url) as db:
        with db.reading():
            products, customers = db.products(), db.customers()
            history = db.history(end=dt.date(2025, 1, 1))
            assert db.latest_batch() is None and db.last_purchase_day() is None and db.batch(1) is None
        assert len(opened) == 1
        db.products()  # outside: a session of its own
        assert len(opened) == 2
    assert products.schema == pl.Schema(PRODUCT_SCHEMA) and customers.schema == pl.Schema(CUSTOMER_SCHEMA)
    assert history.columns == HISTORY_COLUMNS and history.height == 0


def test_a_missing_sqlite_file_is_refused_without_creating_it(tmp_path):
    from engine.db import Gateway
    from engine.errors import StateError

    path = tmp_path / "nothing.db"
    with Gateway(f"sqlite:///{path}") as db, pytest.raises(StateError, match="does not exist: run 'listwise init'"):
        db.require()
    assert not path.exists()
