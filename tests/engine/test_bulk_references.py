"""An append whose foreign keys the caller checked (`BulkSession.append(references_checked=True)`, as the
import appends its baskets): on PostgreSQL the referenced rows are locked as the keys' own triggers lock
them, and the per-row triggers are skipped only when the role may set session_replication_role.
Whichever way, the keys hold: a missing row is refused, nothing can remove a referenced row before the
commit, and the rows appended afterwards in the same transaction are checked again."""

import datetime as dt
import uuid

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import bulk_session, connect
from engine.errors import StateError
from engine.ingest import import_file
from tests.conftest import fresh_database
from tests.engine.test_ingest import CUSTOMERS, PRODUCTS, STORES, TRANSACTIONS, write

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request, tmp_path) -> str:
    """A fresh PostgreSQL database with one store and two customers (keys 1 and 2)."""
    url = fresh_database(request, tmp_path, "postgres")
    with connect(url).begin() as conn:
        conn.exec_driver_sql("INSERT INTO stores (store_id, name) VALUES ('S1', 'One')")
        conn.exec_driver_sql("INSERT INTO customers (customer_key, customer_id) VALUES (1, 'C1'), (2, 'C2')")
    return url


def baskets(customers: list[int | None], first_key: int = 1) -> pl.DataFrame:
    n = len(customers)
    return pl.DataFrame(
        {
            "basket_key": list(range(first_key, first_key + n)),
            "store_id": ["S1"] * n,
            "basket_id": [f"B{first_key + i}" for i in range(n)],
            "customer_key": customers,
            "ts": [dt.datetime(2025, 1, 6, 10)] * n,
            "day": [dt.date(2025, 1, 6)] * n,
            "source": ["import"] * n,
        },
        schema_overrides={"customer_key": pl.Int64},
    )


def scalar(url: str, sql: str):  # noqa: ANN201
    with connect(url).connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def as_role(request, url: str, grant_set: bool) -> str:
    """`url` for a new login role (not a superuser) that may read and write every table; with
    `grant_set`, also ``GRANT SET ON PARAMETER session_replication_role`` (PostgreSQL 15+)."""
    role = f"lw_role_{uuid.uuid4().hex[:8]}"
    with connect(url).begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        if grant_set:
            if conn.exec_driver_sql("SHOW server_version_num").scalar() < "150000":
                pytest.skip("GRANT SET ON PARAMETER needs PostgreSQL 15")
            conn.exec_driver_sql(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


def test_checked_rows_lock_what_they_reference_until_the_commit(pg_url):
    with bulk_session(pg_url) as bulk:
        bulk.append("baskets", baskets([1, None, 1]), references_checked=True)
        assert bulk.execute("SELECT current_setting('session_replication_role')") == [
            ("origin",)
        ]  # the triggers are back on
        with connect(pg_url).connect() as other:
            other.exec_driver_sql("SET lock_timeout = '300ms'")
            # the checkout reads and updates a customer as ever (a key share lock blocks neither)...
            other.exec_driver_sql("UPDATE customers SET household_size = 3 WHERE customer_key = 1")
            other.commit()
            # ...but nothing removes a customer or a store the uncommitted baskets name
            for sql in ("DELETE FROM customers WHERE customer_key = 1", "DELETE FROM stores WHERE store_id = 'S1'"):
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    other.exec_driver_sql(sql)
                other.rollback()
            other.exec_driver_sql("DELETE FROM customers WHERE customer_key = 2")  # not named: free to go
            other.commit()
    assert scalar(pg_url, "SELECT count(*) FROM baskets WHERE customer_key = 1") == 2


def test_a_missing_referenced_row_is_refused_and_nothing_lands(pg_url):
    with pytest.raises(StateError, match=r"^baskets.customer_key 7: no such row in customers"):
        with bulk_session(pg_url) as bulk:
            bulk.append("baskets", baskets([1, 7]), references_checked=True)
    frame = baskets([1]).with_columns(pl.lit("S9").alias("store_id"))
    with pytest.raises(StateError, match=r"^baskets.store_id S9: no such row in stores"):
        with bulk_session(pg_url) as bulk:
            bulk.append("baskets", frame, references_checked=True)
    assert scalar(pg_url, "SELECT count(*) FROM baskets") == 0


def checked_then_not(url: str) -> None:
    with bulk_session(url) as bulk:
        bulk.append("baskets", baskets([1]), references_checked=True)
        bulk.append("baskets", baskets([7], first_key=5))  # not checked by the caller: the trigger refuses


def test_rows_appended_after_a_checked_append_are_checked_by_the_database(pg_url):
    with pytest.raises(Exception, match="foreign key"):
        checked_then_not(pg_url)
    assert scalar(pg_url, "SELECT count(*) FROM baskets") == 0


def test_a_role_without_the_privilege_keeps_the_databases_own_checks(request, pg_url):
    plain = as_role(request, pg_url, grant_set=False)
    with bulk_session(plain) as bulk:
        assert not bulk._may_skip_triggers()
    with pytest.raises(Exception, match="foreign key"):  # the trigger's refusal, not the session's StateError
        with bulk_session(plain) as bulk:
            bulk.append("baskets", baskets([1, 7]), references_checked=True)
    granted = as_role(request, pg_url, grant_set=True)
    with bulk_session(granted) as bulk:
        assert bulk._may_skip_triggers()
        with pytest.raises(StateError, match="customer_key 7"):
            bulk.append("baskets", baskets([1, 7]), references_checked=True)


@pytest.mark.parametrize("grant_set", [False, True])
def test_an_import_by_a_role_with_or_without_the_privilege_lands_the_same(request, tmp_path, grant_set):
    urls = [fresh_database(request, tmp_path, "postgres") for _ in range(2)]
    for url in urls:
        for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
            import_file(url, kind, write(tmp_path, f"{kind}.csv", text))
    path = write(tmp_path, "transactions.csv", TRANSACTIONS)
    import_file(urls[0], "transactions", path)  # the superuser: triggers skipped
    import_file(as_role(request, urls[1], grant_set), "transactions", path)
    read = "SELECT store_id, basket_id, customer_key, ts, line_count, line_sum FROM baskets ORDER BY basket_id"
    got = []
    for url in urls:
        with connect(url).connect() as conn:
            got.append(conn.execute(sa.text(read)).fetchall())
    assert got[0] == got[1] and len(got[0]) == 3
