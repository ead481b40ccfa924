"""Ingestion of landed days into raw revisions, on real DuckDB and real object stores."""

from __future__ import annotations

from datetime import date

import pytest

from mlpipeline import batches, landing
from mlpipeline.ingest import load_revision, prepare_revision
from mlpipeline.objectstore import ObjectStore
from mlpipeline.warehouse import connect

DAY = date(2026, 3, 10)
HEADER = (
    "transaction_id,customer_id,merchant_id,merchant_category,amount,currency,country,channel,"
    "event_ts"
)
GOOD_ROWS = [
    "t1,c1,m1,grocery,12.50,EUR,DE,pos,2026-03-10T08:00:00Z",
    "t2,c1,m2,travel,300.00,GBP,GB,online,2026-03-10T23:59:59Z",
    "t3,c2,m1,grocery,7.10,EUR,FR,contactless,2026-03-10T00:00:00Z",
]


def land(
    store: ObjectStore,
    rows: list[str],
    *,
    dataset: str = "transactions",
    header: str = HEADER,
    name: str = "part-00000.csv",
    declared: int | None = None,
) -> None:
    body = "\n".join([header, *rows]) + "\n"
    store.put_bytes(landing.day_prefix(dataset, DAY) + name, body.encode())
    count = len(rows) if declared is None else declared
    landing.write_success(store, dataset, DAY, [landing.DeclaredFile(name, count)])


def ingest(store: ObjectStore, settings, dataset: str = "transactions"):
    prepared = prepare_revision(store, dataset, DAY)
    with connect(settings) as con:
        status = load_revision(con, store, prepared, run_id="test")
    return prepared, status


@pytest.mark.parametrize("store_fixture", ["local_store", "s3_store"])
def test_good_day_lands_as_revision_aside(request, settings, store_fixture):
    store = request.getfixturevalue(store_fixture)
    land(store, GOOD_ROWS)
    prepared, status = ingest(store, settings)
    assert status == "ingested"
    assert prepared.rows_written == 3 and prepared.rows_rejected == 0
    assert prepared.batch_id == "transactions-2026-03-10"
    assert store.exists(
        f"raw/transactions/dt=2026-03-10/rev={prepared.revision}/part-00000.parquet"
    )
    with connect(settings) as con:
        rows = con.execute(
            "SELECT transaction_id, amount, event_ts, batch_id, revision, source_row "
            "FROM raw.transactions ORDER BY transaction_id"
        ).fetchall()
        assert [r[0] for r in rows] == ["t1", "t2", "t3"]
        assert str(rows[1][1]) == "300.00" and str(rows[1][2]) == "2026-03-10 23:59:59"
        assert {r[3] for r in rows} == {prepared.batch_id}
        assert {r[4] for r in rows} == {prepared.revision}
        # Not current yet: nothing downstream sees it until promoted after the raw check.
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 0
        batches.set_status(con, prepared.batch_id, prepared.revision, "validated", run_id="t")
        batches.promote(con, prepared.batch_id, prepared.revision, run_id="t")
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 3


def test_same_content_twice_changes_nothing(local_store, settings):
    land(local_store, GOOD_ROWS)
    first, _ = ingest(local_store, settings)
    second, status = ingest(local_store, settings)
    assert second.revision == first.revision and status == "ingested"
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM meta.batches").fetchone()[0] == 1


def test_new_content_is_a_new_revision_and_the_old_one_stays(local_store, settings):
    land(local_store, GOOD_ROWS)
    first, _ = ingest(local_store, settings)
    with connect(settings) as con:
        batches.set_status(con, first.batch_id, first.revision, "validated", run_id="t")
        batches.promote(con, first.batch_id, first.revision, run_id="t")
    land(local_store, GOOD_ROWS[:2])
    second, _ = ingest(local_store, settings)
    assert second.revision != first.revision
    with connect(settings) as con:
        batches.set_status(con, second.batch_id, second.revision, "validated", run_id="t")
        batches.promote(con, second.batch_id, second.revision, run_id="t")
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 2
        statuses = dict(con.execute("SELECT revision, status FROM meta.batches").fetchall())
    assert statuses == {first.revision: "superseded", second.revision: "current"}


def test_bad_rows_are_rejected_with_rule_position_and_value(local_store, settings):
    sql = "t9,c3,m1,grocery,5.00,EUR,DE,pos,2026-03-10T10:00:00Z"
    rows = [
        *GOOD_ROWS,
        "t4,c3,m1,grocery,-5.00,EUR,DE,pos,2026-03-10T10:00:00Z",
        "t5,c3,m1,grocery,5.00,EURO,DE,pos,2026-03-10T10:00:00Z",
        "t6,c3,m1,grocery,5.00,EUR,DE,pos,2026-03-11T00:00:00Z",
        "t7,c3,m1,grocery,5.00,EUR,DE,pos,yesterday",
        "t1,c3,m1,grocery,5.00,EUR,DE,pos,2026-03-10T10:00:00Z",
        "t8,c3,m1,grocery,999999.00,EUR,DE,pos,2026-03-10T10:00:00Z",
        sql.replace("c3", "'); DROP TABLE raw.transactions; --"),
    ]
    land(local_store, rows)
    prepared, status = ingest(local_store, settings)
    assert status == "ingested"
    assert prepared.rows_read == 10 and prepared.rows_rejected == 6
    with connect(settings) as con:
        rejects = con.execute(
            "SELECT source_row, rule, detail FROM meta.rejected_rows ORDER BY source_row"
        ).fetchall()
        kept = con.execute("SELECT customer_id FROM raw.transactions WHERE transaction_id='t9'")
        assert kept.fetchone()[0] == "'); DROP TABLE raw.transactions; --"
    assert rejects == [
        (4, "amount > 0", "amount='-5.00'"),
        (5, "currency is an ISO 4217 code", "currency='EURO'"),
        (6, "event_ts inside day 2026-03-10", "event_ts='2026-03-11T00:00:00Z'"),
        (7, "event_ts is ISO-8601 UTC", "event_ts='yesterday'"),
        (8, "transaction_id unique in the batch", "transaction_id='t1'"),
        (9, "amount <= 20000 EUR", "amount='999999.00'"),
    ]


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        ("missing_column", "exact columns"),
        ("extra_column", "exact columns"),
        ("count_mismatch", "row count matches _SUCCESS"),
        ("undeclared_file", "files match _SUCCESS"),
        ("non_utf8", "UTF-8 text"),
        ("empty_file", "non-empty file"),
        ("malformed_csv", "well-formed CSV"),
    ],
)
def test_bad_revision_is_quarantined_and_never_current(local_store, settings, case, rule):
    if case == "missing_column":
        land(local_store, [r.rsplit(",", 1)[0] for r in GOOD_ROWS], header=HEADER.rsplit(",", 1)[0])
    elif case == "extra_column":
        land(local_store, [r + ",x" for r in GOOD_ROWS], header=HEADER + ",note")
    elif case == "count_mismatch":
        land(local_store, GOOD_ROWS, declared=5)
    elif case == "undeclared_file":
        land(local_store, GOOD_ROWS)
        local_store.put_bytes(landing.day_prefix("transactions", DAY) + "late.csv", b"x")
    elif case == "non_utf8":
        land(
            local_store, [GOOD_ROWS[0], "t2,c\xff,m1,grocery,1.00,EUR,DE,pos,2026-03-10T01:00:00Z"]
        )
        key = landing.day_prefix("transactions", DAY) + "part-00000.csv"
        local_store.put_bytes(key, local_store.get_bytes(key).replace("ÿ".encode(), b"\xff"))
    elif case == "empty_file":
        local_store.put_bytes(landing.day_prefix("transactions", DAY) + "part-00000.csv", b"")
        landing.write_success(
            local_store, "transactions", DAY, [landing.DeclaredFile("part-00000.csv", 0)]
        )
    elif case == "malformed_csv":
        land(local_store, [GOOD_ROWS[0], "t2,c1,m1"])
    prepared, status = ingest(local_store, settings)
    assert status == "quarantined"
    assert prepared.error["rule"] == rule
    assert prepared.object_key is None
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 0
        with pytest.raises(ValueError, match="quarantined"):
            batches.promote(con, prepared.batch_id, prepared.revision, run_id="t")
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 0


def test_declared_empty_day_is_valid(local_store, settings):
    landing.write_success(local_store, "chargebacks", DAY, [])
    prepared, status = ingest(local_store, settings, dataset="chargebacks")
    assert status == "ingested" and prepared.rows_written == 0 and prepared.error is None


def test_missing_success_says_what_is_missing(local_store):
    with pytest.raises(landing.LandingNotReady, match="_SUCCESS"):
        prepare_revision(local_store, "transactions", DAY)
