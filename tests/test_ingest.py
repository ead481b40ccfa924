"""Ingestion of landed days into raw revisions, on real DuckDB and real object stores."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mlpipeline.core import landing
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ingest import batches, pending_rows
from mlpipeline.ingest.revisions import load_revision, prepare_revision
from mlpipeline.warehouse import connect
from mlpipeline.warehouse.meta import update_day

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


@pytest.mark.parametrize(
    "store_fixture",
    [
        pytest.param("local_store", marks=pytest.mark.unit),
        pytest.param("s3_store", marks=pytest.mark.integration),
    ],
)
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


@pytest.mark.unit
def test_same_content_twice_changes_nothing(local_store, settings):
    land(local_store, GOOD_ROWS)
    first, _ = ingest(local_store, settings)
    second, status = ingest(local_store, settings)
    assert second.revision == first.revision and status == "ingested"
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM meta.batches").fetchone()[0] == 1


@pytest.mark.unit
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


@pytest.mark.unit
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
@pytest.mark.unit
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
    # Readable rows of a miscounted day are kept aside (releasable); nothing else is.
    kept = 3 if case == "count_mismatch" else 0
    assert (prepared.object_key is not None) == bool(kept)
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == kept
        with pytest.raises(ValueError, match="quarantined"):
            batches.promote(con, prepared.batch_id, prepared.revision, run_id="t")
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 0


@pytest.mark.unit
def test_declared_empty_day_is_valid(local_store, settings):
    landing.write_success(local_store, "chargebacks", DAY, [])
    prepared, status = ingest(local_store, settings, dataset="chargebacks")
    assert status == "ingested" and prepared.rows_written == 0 and prepared.error is None


@pytest.mark.unit
def test_missing_success_says_what_is_missing(local_store):
    with pytest.raises(landing.LandingNotReady, match="_SUCCESS"):
        prepare_revision(local_store, "transactions", DAY)


CB_HEADER = "transaction_id,reported_at,reason_code"


def _promote(settings, prepared) -> None:
    with connect(settings) as con:
        batches.set_status(con, prepared.batch_id, prepared.revision, "validated", run_id="t")
        batches.promote(con, prepared.batch_id, prepared.revision, run_id="t")


CHARGEBACKS = [
    "t1,2026-03-10T09:00:00Z,10.4",  # after t1 (08:00): counts
    "t2,2026-03-10T12:00:00Z,4837",  # before t2 (23:59:59): rejected once t2 is known
    "nope,2026-03-10T12:00:00Z,13.1",  # no such transaction: waits, then expires
    "x'); DELETE FROM raw.transactions; --,2026-03-10T12:00:00Z,10.5",
]


def _visible_pending_rejected(settings) -> tuple[list, list, list]:
    with connect(settings) as con:
        return (
            con.execute("SELECT transaction_id FROM raw.chargebacks_current").fetchall(),
            con.execute(
                "SELECT source_row, waits_for_transaction FROM meta.pending_rows ORDER BY 1"
            ).fetchall(),
            con.execute(
                "SELECT source_row, rule, detail FROM meta.rejected_rows ORDER BY source_row"
            ).fetchall(),
        )


@pytest.mark.integration
def test_chargebacks_loaded_before_their_transactions_wait_and_count_once_those_are_current(
    s3_store, settings
):
    """The chargebacks day is processed first: every row is kept (pending), none is lost; when
    the transactions become current the matching one counts, with no new revision."""
    land(s3_store, CHARGEBACKS, dataset="chargebacks", header=CB_HEADER)
    chargebacks, status = ingest(s3_store, settings, dataset="chargebacks")
    assert status == "ingested"
    assert (chargebacks.rows_read, chargebacks.rows_written, chargebacks.rows_rejected) == (4, 4, 0)
    _promote(settings, chargebacks)
    with connect(settings) as con:
        assert pending_rows.settle(con, DAY).pending == 4
    visible, pending, rejected = _visible_pending_rejected(settings)
    assert visible == [] and [row for row, _ in pending] == [1, 2, 3, 4] and rejected == []

    land(s3_store, GOOD_ROWS)
    txns, _ = ingest(s3_store, settings)
    _promote(settings, txns)
    with connect(settings) as con:
        settled = pending_rows.settle(con, DAY)
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] == 3
        counts = con.execute(
            "SELECT revision, rows_written, rows_rejected FROM meta.batches WHERE batch_id = ?",
            [chargebacks.batch_id],
        ).fetchall()
    assert (settled.pending, settled.reported_before, settled.expired) == (2, 1, [])
    assert counts == [(chargebacks.revision, 4, 0)]
    visible, pending, rejected = _visible_pending_rejected(settings)
    assert visible == [("t1",)]
    assert pending == [(3, "nope"), (4, "x'); DELETE FROM raw.transactions; --")]
    assert rejected == [
        (
            2,
            "reported_at not before the transaction",
            "reported_at='2026-03-10T12:00:00Z' before event_ts='2026-03-10T23:59:59Z'",
        )
    ]


@pytest.mark.unit
def test_chargebacks_waiting_longer_than_pending_days_are_rejected_once(local_store, settings):
    land(local_store, GOOD_ROWS)
    _promote(settings, ingest(local_store, settings)[0])
    land(local_store, CHARGEBACKS, dataset="chargebacks", header=CB_HEADER)
    _promote(settings, ingest(local_store, settings, dataset="chargebacks")[0])
    with connect(settings) as con:
        early = pending_rows.settle(con, DAY + timedelta(days=29), days=30)
        late = pending_rows.settle(con, DAY + timedelta(days=30), days=30)
        again = pending_rows.settle(con, DAY + timedelta(days=31), days=30)
    assert (early.pending, early.expired) == (2, [])
    assert late.pending == 0 and [(r["row"], r["transaction_id"]) for r in late.expired] == [
        (3, "nope"),
        (4, "x'); DELETE FROM raw.transactions; --"),
    ]
    assert again.expired == [] and again.reported_before == 0
    visible, pending, rejected = _visible_pending_rejected(settings)
    assert visible == [("t1",)] and pending == []
    assert [(row, rule) for row, rule, _ in rejected] == [
        (2, "reported_at not before the transaction"),
        (3, "transaction current within 30 days of the chargeback"),
        (4, "transaction current within 30 days of the chargeback"),
    ]


@pytest.mark.unit
def test_chargebacks_of_a_quarantined_transactions_day_count_once_it_is_released(
    local_store, settings
):
    land(local_store, GOOD_ROWS)
    txns, _ = ingest(local_store, settings)
    with connect(settings) as con:
        batches.set_status(con, txns.batch_id, txns.revision, "quarantined", run_id="t")
    land(local_store, ["t1,2026-03-10T09:00:00Z,10.4"], dataset="chargebacks", header=CB_HEADER)
    chargebacks, _ = ingest(local_store, settings, dataset="chargebacks")
    assert chargebacks.rows_written == 1 and chargebacks.rows_rejected == 0
    _promote(settings, chargebacks)
    assert _visible_pending_rejected(settings)[:2] == ([], [(1, "t1")])
    with connect(settings) as con:
        update_day(con, DAY + timedelta(days=1), published=True)
        released = batches.release(con, txns.batch_id, None, run_id="t")
    assert released["stale_days"] == [DAY, DAY + timedelta(days=1)]
    assert _visible_pending_rejected(settings)[:2] == ([("t1",)], [])


@pytest.mark.unit
def test_new_content_for_a_day_marks_the_days_processed_after_it_stale(local_store, settings):
    with connect(settings) as con:
        for offset in (-1, 1, 2):
            update_day(con, DAY + timedelta(days=offset), published=True)
    land(local_store, GOOD_ROWS)
    first, _ = ingest(local_store, settings)
    _promote(settings, first)
    with connect(settings) as con:
        assert batches.stale_days(con) == [DAY + timedelta(days=1), DAY + timedelta(days=2)]
        for offset in (1, 2):
            update_day(con, DAY + timedelta(days=offset), stale=False)
        # Promoting the current revision again (a re-run) changes nothing.
        batches.promote(con, first.batch_id, first.revision, run_id="t")
        assert batches.stale_days(con) == []


@pytest.mark.unit
def test_parquet_landing_is_parsed_and_checked_like_csv(local_store, settings):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    names = HEADER.split(",")
    rows = [
        r.split(",") for r in [*GOOD_ROWS, "t4,c3,m1,grocery,abc,EUR,DE,pos,2026-03-10T10:00:00Z"]
    ]
    table = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    local_store.put_bytes(
        landing.day_prefix("transactions", DAY) + "part-0.parquet", buffer.getvalue()
    )
    landing.write_success(
        local_store, "transactions", DAY, [landing.DeclaredFile("part-0.parquet", 4)]
    )
    prepared, status = ingest(local_store, settings)
    assert status == "ingested" and prepared.rows_written == 3 and prepared.rows_rejected == 1
    _promote(settings, prepared)
    with connect(settings) as con:
        current = con.execute(
            "SELECT transaction_id, amount FROM raw.transactions_current ORDER BY 1"
        ).fetchall()
        reject = con.execute("SELECT source_file, rule, detail FROM meta.rejected_rows").fetchone()
    assert [r[0] for r in current] == ["t1", "t2", "t3"] and str(current[0][1]) == "12.50"
    assert reject == (
        "part-0.parquet",
        "amount is a number with at most 2 decimals",
        "amount='abc'",
    )


@pytest.mark.unit
def test_unreadable_parquet_is_quarantined(local_store, settings):
    local_store.put_bytes(landing.day_prefix("transactions", DAY) + "part-0.parquet", b"PAR1junk")
    landing.write_success(
        local_store, "transactions", DAY, [landing.DeclaredFile("part-0.parquet", 1)]
    )
    prepared, status = ingest(local_store, settings)
    assert status == "quarantined" and prepared.error["rule"] == "readable parquet"
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 0


def _register(con, dataset: str, day, status: str, revision: str = "r1") -> None:
    from mlpipeline.warehouse.meta import utcnow

    con.execute(
        "INSERT INTO meta.batches (batch_id, revision, dataset, dt, status, content_checksum, "
        "object_prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'x', 'raw/x/', ?, ?)",
        [f"{dataset}-{day}", revision, dataset, day, status, utcnow(), utcnow()],
    )


@pytest.mark.unit
def test_missing_batches_are_the_window_days_without_a_current_revision(settings):
    from datetime import timedelta

    from mlpipeline.warehouse.meta import ensure_meta

    first = DAY - timedelta(days=3)
    with connect(settings) as con:
        ensure_meta(con)
        for offset in range(4):
            day = first + timedelta(days=offset)
            _register(con, "transactions", day, "quarantined" if offset == 1 else "current")
            _register(con, "chargebacks", day, "current")
        both = ("transactions", "chargebacks")
        assert batches.missing_batches(con, DAY, 35, both) == [
            f"transactions-{first + timedelta(days=1)}"
        ]
        # The window ends before the quarantined day: nothing missing.
        assert batches.missing_batches(con, DAY, 2, both) == []
        # A day not ingested yet is missing too.
        assert batches.missing_batches(con, DAY + timedelta(days=1), 1, both) == [
            f"transactions-{DAY + timedelta(days=1)}",
            f"chargebacks-{DAY + timedelta(days=1)}",
        ]


@pytest.mark.unit
def test_release_makes_current_and_marks_that_day_and_later_days_stale(settings):
    from datetime import timedelta

    from mlpipeline.warehouse.meta import ensure_meta, update_day

    with connect(settings) as con:
        ensure_meta(con)
        _register(con, "transactions", DAY, "current", revision="old")
        _register(con, "transactions", DAY, "quarantined", revision="new")
        for offset in (-1, 1, 2):
            update_day(con, DAY + timedelta(days=offset), published=True)
        result = batches.release(con, f"transactions-{DAY}", None, run_id="cli:release")
        statuses = dict(con.execute("SELECT revision, status FROM meta.batches").fetchall())
        events = con.execute(
            "SELECT status FROM meta.batch_events WHERE revision = 'new' ORDER BY recorded_at"
        ).fetchall()
        stale = con.execute("SELECT day FROM meta.days WHERE stale ORDER BY day").fetchall()
        assert batches.was_released(con, f"transactions-{DAY}", "new")
        with pytest.raises(ValueError, match="'current'"):
            batches.discard(con, f"transactions-{DAY}", "new", run_id="t")
    assert result["revision"] == "new"
    assert statuses == {"old": "superseded", "new": "current"}
    assert [e[0] for e in events] == ["released", "current"]
    expected = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    assert [d[0] for d in stale] == expected == result["stale_days"]


@pytest.mark.unit
def test_release_refuses_a_revision_rejected_as_a_whole_and_discard_marks_it(local_store, settings):
    land(local_store, GOOD_ROWS)
    local_store.put_bytes(landing.day_prefix("transactions", DAY) + "late.csv", b"x")
    prepared, status = ingest(local_store, settings)
    assert status == "quarantined"
    with connect(settings) as con:
        with pytest.raises(ValueError, match="no rows to release"):
            batches.release(con, prepared.batch_id, None, run_id="t")
        batches.discard(con, prepared.batch_id, None, run_id="t")
        assert batches.get(con, prepared.batch_id, prepared.revision)["status"] == "discarded"
        with pytest.raises(LookupError, match="no revision in status"):
            batches.release(con, prepared.batch_id, None, run_id="t")


@pytest.mark.unit
def test_release_cli_prints_the_rerun_commands_without_an_airflow_api(
    settings, monkeypatch, capsys
):
    from mlpipeline.cli import main
    from mlpipeline.warehouse.meta import ensure_meta

    monkeypatch.delenv("AIRFLOW_API_URL", raising=False)
    with connect(settings) as con:
        ensure_meta(con)
        _register(con, "transactions", DAY, "quarantined")
    main(["batches", "release", f"transactions-{DAY}"])
    out = capsys.readouterr().out
    assert "mlpipeline airflow dags trigger fraud_backfill" in out
    assert f'"start": "{DAY}", "end": "{DAY}"' in out
    assert f"mlpipeline airflow dags test fraud_nightly {DAY}" in out


@pytest.mark.unit
def test_backfill_range_rules():
    from mlpipeline.ops import backfill

    today = date(2026, 4, 1)
    days = backfill.validate_range("2026-03-29", "2026-03-31", today=today, max_days=5)
    assert days == ["2026-03-29", "2026-03-30", "2026-03-31"]
    for start, end, message in [
        ("2026-03-31", "2026-03-29", "after end"),
        ("2026-03-30", "2026-04-01", "has not ended yet"),
        ("2026-03-01", "2026-03-31", "more than backfill.max_days=5"),
    ]:
        with pytest.raises(backfill.BackfillRangeInvalid, match=message):
            backfill.validate_range(start, end, today=today, max_days=5)


@pytest.mark.unit
def test_backfill_progress_names_the_failed_day_and_the_days_it_left_out():
    from mlpipeline.ops.nightly_backfill import Progress

    d1, d2, d3 = date(2026, 3, 29), date(2026, 3, 30), date(2026, 3, 31)
    running = Progress({d1: "success", d2: "running", d3: "queued"}, complete=False)
    assert running.failure() is None and running.summary() == "1/3 days done"
    retried = Progress({d1: "success", d2: "success", d3: "success"}, complete=True)
    assert retried.failure() is None
    # The watcher cancelled the backfill: Airflow marks the queued day failed at once and the
    # backfill complete, while the failed day's run is still finishing its final tasks.
    cancelled = Progress({d1: "success", d2: "running", d3: "failed"}, complete=True)
    assert cancelled.failure() is None and not cancelled.finished
    stopped = Progress({d1: "success", d2: "failed", d3: "failed"}, complete=True)
    assert stopped.finished
    assert stopped.failed_day == d2
    assert "failed for 2026-03-30" in stopped.failure()
    assert "did not run 2026-03-31" in stopped.failure()
    assert "trigger fraud_backfill again from 2026-03-30" in stopped.failure()
    left_out = Progress({d1: "success", d2: None, d3: "success"}, complete=True)
    assert left_out.failure() == "the backfill completed without running 2026-03-30"


@pytest.mark.unit
def test_miscounted_day_is_quarantined_then_released_to_current(local_store, settings):
    land(local_store, GOOD_ROWS, declared=2)
    prepared, status = ingest(local_store, settings)
    assert status == "quarantined" and prepared.error["rule"] == "row count matches _SUCCESS"
    with connect(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 0
        batches.release(con, prepared.batch_id, None, run_id="t")
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()[0] == 3


@pytest.mark.unit
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("dataset", "header"), [("transactions", HEADER), ("chargebacks", CB_HEADER)]
)
def test_a_file_with_only_its_header_is_an_empty_day(
    local_store, settings, dataset, header, file_format
):
    """ "No chargebacks today" as a file: a normal empty revision, not a crash."""
    name = f"part-00000.{file_format}"
    if file_format == "csv":
        body = (header + "\n").encode()
    else:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.table({c: pa.array([], pa.string()) for c in header.split(",")}), buffer)
        body = buffer.getvalue()
    local_store.put_bytes(landing.day_prefix(dataset, DAY) + name, body)
    landing.write_success(local_store, dataset, DAY, [landing.DeclaredFile(name, 0)])
    prepared, status = ingest(local_store, settings, dataset=dataset)
    assert status == "ingested"
    assert prepared.rows_written == 0 and prepared.rows_rejected == 0 and prepared.error is None


def _land_parquet(store, table) -> None:
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    store.put_bytes(landing.day_prefix("transactions", DAY) + "part-0.parquet", buffer.getvalue())
    landing.write_success(
        store, "transactions", DAY, [landing.DeclaredFile("part-0.parquet", table.num_rows)]
    )


def _typed_transactions(amount, event_ts):  # noqa: ANN001, ANN202 - pyarrow arrays
    import pyarrow as pa

    text = {n: pa.array(["t1", "c1", "m1", "grocery"][i : i + 1]) for i, n in enumerate(
        ["transaction_id", "customer_id", "merchant_id", "merchant_category"]
    )}  # fmt: skip
    rest = {
        n: pa.array([v]) for n, v in (("currency", "EUR"), ("country", "DE"), ("channel", "pos"))
    }
    return pa.table({**text, "amount": amount, **rest, "event_ts": event_ts})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("amount_type", "ts_type", "found"),
    [
        ("float64", "utc", "amount: double"),
        ("decimal", "naive", "event_ts: timestamp[us]"),
        ("decimal3", "utc", "amount: decimal128(18, 3)"),
    ],
)
def test_parquet_columns_of_the_wrong_type_reject_the_revision(
    local_store, settings, amount_type, ts_type, found
):
    """Floats and zone-less timestamps would silently change meaning as text."""
    from datetime import UTC, datetime
    from decimal import Decimal

    import pyarrow as pa

    amounts = {
        "float64": pa.array([12.5]),
        "decimal": pa.array([Decimal("12.50")], pa.decimal128(18, 2)),
        "decimal3": pa.array([Decimal("12.500")], pa.decimal128(18, 3)),
    }
    when = datetime(2026, 3, 10, 8, 0)
    stamps = {
        "utc": pa.array([when.replace(tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "naive": pa.array([when], pa.timestamp("us")),
    }
    _land_parquet(local_store, _typed_transactions(amounts[amount_type], stamps[ts_type]))
    prepared, status = ingest(local_store, settings)
    assert status == "quarantined"
    assert prepared.error["rule"] == "parquet column types"
    assert prepared.error["file"].endswith("part-0.parquet")
    assert found in prepared.error["detail"]


@pytest.mark.unit
def test_parquet_decimal_amounts_and_utc_timestamps_are_read_as_their_values(local_store, settings):
    from datetime import UTC, datetime
    from decimal import Decimal

    import pyarrow as pa

    when = datetime(2026, 3, 10, 8, 0, 0, 250000, tzinfo=UTC)
    _land_parquet(
        local_store,
        _typed_transactions(
            pa.array([Decimal("12.50")], pa.decimal128(18, 2)),
            pa.array([when], pa.timestamp("us", tz="UTC")),
        ),
    )
    prepared, status = ingest(local_store, settings)
    assert status == "ingested" and prepared.rows_written == 1 and prepared.rows_rejected == 0
    _promote(settings, prepared)
    with connect(settings) as con:
        row = con.execute("SELECT amount, event_ts FROM raw.transactions_current").fetchone()
    assert str(row[0]) == "12.50"
    assert row[1].replace(tzinfo=UTC) == when
