import sqlalchemy as sa

from engine.db import allocate_keys, bulk_session, connect, init_schema, schema_statements


def test_schema_creates_every_table_on_both_databases(db_url):
    tables = set(sa.inspect(connect(db_url)).get_table_names())
    assert {"customers", "products", "baskets", "basket_lines", "lists", "offers", "redemptions"} <= tables


def test_schema_is_idempotent(db_url):
    engine = connect(db_url)
    init_schema(engine)          # second time: nothing changes, no error
    assert len(schema_statements()) > 20


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
