"""An append whose foreign keys the caller checked (`BulkSession.append(references_checked=True)`, as the
import appends its baskets): the references are checked again inside the write transaction, one
statement per key; on PostgreSQL the referenced rows are locked as the keys' own triggers lock them, and
the per-row triggers are skipped only when the role may and nothing else would be silenced. Whichever
way, the keys hold: a missing row is refused, nothing can remove a referenced row before the commit, and
the rows appended afterwards in the same transaction are checked by the database again."""

import datetime as dt
import uuid

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import MissingReference, bulk_session, connect
from engine.errors import InputError
from engine.ingest import import_file
from tests.conftest import fresh_database
from tests.engine.test_ingest import CUSTOMERS, PRODUCTS, STORES, TRANSACTIONS, write

postgres = pytest.mark.postgres


def with_references(url: str) -> str:
    """`url` once it holds one store (S1) and two customers (keys 1 and 2)."""
    with connect(url).begin() as conn:
        conn.exec_driver_sql("INSERT INTO stores (store_id, name) VALUES ('S1', 'One')")
        conn.exec_driver_sql("INSERT INTO customers (customer_key, customer_id) VALUES (1, 'C1'), (2, 'C2')")
    return url


@pytest.fixture
def pg_url(request, tmp_path) -> str:
    return with_references(fresh_database(request, tmp_path, "postgres"))


@pytest.fixture
def any_url(db_url) -> str:
    return with_references(db_url)


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


def as_role(url: str, grant_set: bool) -> str:
    """`url` for a new login role (not a superuser) that may read and write every table; with
    `grant_set`, also ``GRANT SET ON PARAMETER session_replication_role`` (PostgreSQL 15+)."""
    role = f"lw_role_{uuid.uuid4().hex[:8]}"
    with connect(url).begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        if grant_set:
            if int(conn.exec_driver_sql("SHOW server_version_num").scalar()) < 150000:
                pytest.skip("GRANT SET ON PARAMETER needs PostgreSQL 15")
            conn.exec_driver_sql(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


def key_lookups(bulk) -> int:  # noqa: ANN001
    """Scans of customers' primary key in this transaction so far: a key trigger makes one per row."""
    ((n,),) = bulk.execute(
        "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_xact_user_tables WHERE relname = 'customers'"
    )
    return int(n)


def test_a_missing_referenced_row_is_refused_on_either_database(any_url):
    with pytest.raises(MissingReference, match=r"^baskets.customer_key 7: no such row in customers$"):
        with bulk_session(any_url) as bulk:
            bulk.append("baskets", baskets([1, 7]), references_checked=True)
    frame = baskets([1]).with_columns(pl.lit("S9").alias("store_id"))
    with pytest.raises(MissingReference, match=r"^baskets.store_id S9: no such row in stores$"):
        with bulk_session(any_url) as bulk:
            bulk.append("baskets", frame, references_checked=True)
    assert scalar(any_url, "SELECT count(*) FROM baskets") == 0


def test_a_check_after_a_refused_one_in_the_same_session_starts_afresh(any_url):
    with bulk_session(any_url) as bulk:
        with pytest.raises(MissingReference, match="customer_key 9"):
            bulk.append("baskets", baskets([2, 9]), references_checked=True)
        # the first check's keys (2, 9) must not count for the second's (1, 7): 7 is missing
        with pytest.raises(MissingReference, match="customer_key 7"):
            bulk.append("baskets", baskets([1, 7], first_key=5), references_checked=True)
        bulk.append("baskets", baskets([1, 2, None], first_key=10), references_checked=True)
    assert scalar(any_url, "SELECT count(*) FROM baskets") == 3


@postgres
def test_checked_rows_lock_what_they_reference_until_the_commit(pg_url):
    with bulk_session(pg_url) as bulk:
        bulk.append("baskets", baskets([1, None, 1]), references_checked=True)
        assert bulk.execute("SELECT current_setting('session_replication_role')") == [("origin",)]
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


@postgres
def test_the_key_triggers_are_skipped_only_when_the_role_may(pg_url):
    many = baskets([1, 2] * 100)
    with bulk_session(pg_url) as bulk:  # a superuser: one lookup of the two keys, not 200
        before = key_lookups(bulk)
        bulk.append("baskets", many, references_checked=True)
        assert key_lookups(bulk) - before < 10
    plain = as_role(pg_url, grant_set=False)
    with bulk_session(plain) as bulk:  # no privilege: the triggers check each row, as without the flag
        before = key_lookups(bulk)
        bulk.append("baskets", baskets([1, 2] * 100, first_key=1000), references_checked=True)
        assert key_lookups(bulk) - before >= 200
    with pytest.raises(MissingReference, match="customer_key 7"):  # checked all the same, nothing locked
        with bulk_session(plain) as bulk:
            bulk.append("baskets", baskets([1, 7], first_key=2000), references_checked=True)
    granted = as_role(pg_url, grant_set=True)
    with pytest.raises(MissingReference, match="customer_key 7"):
        with bulk_session(granted) as bulk:
            bulk.append("baskets", baskets([1, 7], first_key=2000), references_checked=True)


@postgres
def test_without_update_on_the_referenced_tables_or_with_row_security_the_triggers_check(pg_url):
    """The lock needs UPDATE on stores and customers; row security would hide rows from its count
    (not from the triggers'): either way the triggers keep checking, and the append still lands."""
    granted = as_role(pg_url, grant_set=True)
    role = sa.engine.make_url(granted).username
    with connect(pg_url).begin() as conn:
        conn.exec_driver_sql(f"REVOKE UPDATE ON customers, stores FROM {role}")
    with bulk_session(granted) as bulk:
        assert not bulk._reference_rights("baskets")[1]
        before = key_lookups(bulk)
        bulk.append("baskets", baskets([1, 2] * 50), references_checked=True)
        assert key_lookups(bulk) - before >= 100
    with connect(pg_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customers ENABLE ROW LEVEL SECURITY")
    with bulk_session(pg_url) as bulk:  # even a superuser's (whom row security does not bind)...
        assert bulk._reference_rights("baskets") == (False, False)  # ...nor checks: a count would obey it
    with pytest.raises(Exception, match="foreign key"):  # so the trigger refuses a missing customer
        with bulk_session(pg_url) as bulk:
            bulk.append("baskets", baskets([1, 7], first_key=500), references_checked=True)
    assert scalar(pg_url, "SELECT count(*) FROM baskets") == 100


@postgres
def test_a_table_with_a_trigger_of_its_own_keeps_every_trigger(pg_url):
    with connect(pg_url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE audit (basket_key BIGINT)")
        conn.exec_driver_sql(
            "CREATE FUNCTION audit_basket() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO audit VALUES (NEW.basket_key); RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_baskets AFTER INSERT ON baskets FOR EACH ROW EXECUTE FUNCTION audit_basket()"
        )
    with bulk_session(pg_url) as bulk:
        bulk.append("baskets", baskets([1, 2]), references_checked=True)
    assert scalar(pg_url, "SELECT count(*) FROM audit") == 2


def checked_then_not(url: str) -> None:
    with bulk_session(url) as bulk:
        bulk.append("baskets", baskets([1]), references_checked=True)
        bulk.append("baskets", baskets([7], first_key=5))  # not checked by the caller: the trigger refuses


@postgres
def test_rows_appended_after_a_checked_append_are_checked_by_the_database(pg_url):
    with pytest.raises(Exception, match="foreign key"):
        checked_then_not(pg_url)
    assert scalar(pg_url, "SELECT count(*) FROM baskets") == 0


@postgres
def test_a_checked_append_failing_in_the_client_turns_the_triggers_back_on(pg_url):
    with bulk_session(pg_url) as bulk:
        unsendable = baskets([1]).with_columns(pl.Series("lane", [{"a": 1}]))  # no PostgreSQL type for a struct
        with pytest.raises(Exception, match="(?i)struct"):
            bulk.append("baskets", unsendable, references_checked=True)
        assert bulk.execute("SELECT current_setting('session_replication_role')") == [("origin",)]


@postgres
@pytest.mark.parametrize("grant_set", [False, True])
def test_an_import_by_a_role_with_or_without_the_privilege_lands_the_same(request, tmp_path, grant_set):
    urls = [fresh_database(request, tmp_path, "postgres") for _ in range(2)]
    for url in urls:
        for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
            import_file(url, kind, write(tmp_path, f"{kind}.csv", text))
    path = write(tmp_path, "transactions.csv", TRANSACTIONS)
    import_file(urls[0], "transactions", path)  # the superuser: triggers skipped
    import_file(as_role(urls[1], grant_set), "transactions", path)
    read = "SELECT store_id, basket_id, customer_key, ts, line_count, line_sum FROM baskets ORDER BY basket_id"
    got = []
    for url in urls:
        with connect(url).connect() as conn:
            got.append(conn.execute(sa.text(read)).fetchall())
    assert got[0] == got[1] and len(got[0]) == 3


@pytest.mark.parametrize(
    "database, role",
    [
        ("sqlite", "owner"),
        pytest.param("postgres", "owner", marks=postgres),
        pytest.param("postgres", "without the privilege", marks=postgres),
    ],
)
def test_a_customer_removed_during_an_import_is_named_by_the_files_row(request, tmp_path, monkeypatch, database, role):
    """The references are read before the import's write transaction: a customer deleted in between
    (here, by a hook at that point) is caught inside it and the file refused whole, on either database,
    whether the import's role may skip PostgreSQL's key triggers or not."""
    import engine.ingest

    db_url = fresh_database(request, tmp_path, database)
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(db_url, kind, write(tmp_path, f"{kind}.csv", text))
    importer = db_url if role == "owner" else as_role(db_url, grant_set=False)
    real = engine.ingest._write_transactions

    def delete_then_write(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with connect(db_url).begin() as conn:  # another session's delete, before the write transaction
            conn.exec_driver_sql("DELETE FROM customers WHERE customer_id = 'C2'")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.ingest, "_write_transactions", delete_then_write)
    with pytest.raises(InputError, match=r"^transactions.csv:5: column 'customer_id': unknown customer \(removed"):
        import_file(importer, "transactions", write(tmp_path, "transactions.csv", TRANSACTIONS))
    assert scalar(db_url, "SELECT count(*) FROM baskets") == 0


@postgres
def test_a_gateways_sessions_reuse_a_connection_and_its_checked_values_start_afresh(pg_url):
    """A Gateway's bulk sessions on PostgreSQL take the connection the last committed one left (a new
    one costs ~60 ms): the reference check's temporary table holds only the new session's values; a
    session that rolled back closes its connection (its temporary tables went with it)."""
    from engine.db import Gateway

    def pid(db) -> int:  # noqa: ANN001
        with db.bulk(write=False) as bulk:
            return bulk.execute("SELECT pg_backend_pid()")[0][0]

    with Gateway(pg_url) as db:
        first = pid(db)
        with db.bulk() as bulk:
            assert bulk.execute("SELECT pg_backend_pid()")[0][0] == first
            bulk.append("baskets", baskets([1, 2]), references_checked=True)
            with pytest.raises(MissingReference, match="customer_key 9"):  # refused, the session goes on
                bulk.append("baskets", baskets([9], first_key=3), references_checked=True)
        with db.bulk() as bulk:  # the same connection: the scratch table's 9 must not count now
            assert bulk.execute("SELECT pg_backend_pid()")[0][0] == first
            bulk.append("baskets", baskets([2], first_key=20), references_checked=True)

        def failing() -> None:
            with db.bulk() as bulk:  # the same connection still
                assert bulk.execute("SELECT pg_backend_pid()")[0][0] == first
                bulk.append("baskets", baskets([7], first_key=5), references_checked=True)

        with pytest.raises(MissingReference, match="customer_key 7"):
            failing()
        second = pid(db)
        assert second != first  # the session that failed closed its connection
        with db.bulk() as bulk:
            bulk.append("baskets", baskets([2, 1], first_key=8), references_checked=True)
        assert pid(db) == second
    assert scalar(pg_url, "SELECT count(*) FROM baskets") == 5
    assert scalar(pg_url, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {second}") == 0  # closed with it


@postgres
@pytest.mark.parametrize("through", ["array parameter", "temporary table"])
def test_either_way_of_sending_the_values_refuses_the_missing_and_locks_the_named(pg_url, monkeypatch, through):
    """Up to `_ARRAY_VALUES` distinct values go as one array parameter, more through a temporary table
    (a file of every customer of a large chain): the same refusal, the same locks, the same rows."""
    import engine.db

    monkeypatch.setattr(engine.db, "_ARRAY_VALUES", 10_000 if through == "array parameter" else 0)
    with bulk_session(pg_url) as bulk:
        with pytest.raises(MissingReference, match=r"^baskets.customer_key 7, 9: no such rows? in customers$"):
            bulk.append("baskets", baskets([1, 9, 7, 9]), references_checked=True)
        bulk.append("baskets", baskets([2, None, 2], first_key=10), references_checked=True)
        temporary = bulk.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'lw_refs_%' AND relpersistence = 't'"
        )
        assert temporary == [(0 if through == "array parameter" else 2,)]
        with connect(pg_url).connect() as other:
            other.exec_driver_sql("SET lock_timeout = '300ms'")
            other.commit()
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                other.exec_driver_sql("DELETE FROM customers WHERE customer_key = 2")
            other.rollback()
    assert scalar(pg_url, "SELECT count(*) FROM baskets WHERE customer_key = 2") == 2


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=postgres)])
def test_a_gateways_sessions_ask_for_the_keys_and_rights_once(request, tmp_path, monkeypatch, database):
    """An import's files are a session each on one connection: the foreign keys (and on PostgreSQL the
    role's rights) are asked by the first, not again by every file; each file's values are checked."""
    from engine.db import BulkSession, Gateway

    url = with_references(fresh_database(request, tmp_path, database))
    asked = []
    for name in ("_foreign_keys", "_reference_rights"):
        real = getattr(BulkSession, name)
        monkeypatch.setattr(
            BulkSession, name, lambda self, table, real=real, name=name: asked.append(name) or real(self, table)
        )
    with Gateway(url) as db, db.keeping():
        for first in (1, 10, 20):
            with db.bulk() as bulk:
                bulk.append("baskets", baskets([1, 2], first_key=first), references_checked=True)
        with pytest.raises(MissingReference, match="customer_key 7"):
            with db.bulk() as bulk:
                bulk.append("baskets", baskets([7], first_key=30), references_checked=True)
    assert sorted(asked) == (["_foreign_keys"] if database == "sqlite" else ["_foreign_keys", "_reference_rights"])
    assert scalar(url, "SELECT count(*) FROM baskets") == 6
