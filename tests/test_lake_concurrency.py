"""Writers that share the warehouse at once, on a PostgreSQL catalog as in the stack, each with
its own working folder (two workers on two hosts) and the data path they share (the bucket).

The night of D is built while D-1 is re-run on a corrected revision, and an analyst queries
`raw.transactions_current` and `features.customer_snapshot` all along: every query must succeed,
each cutoff's row count must be 0 or its final count, and each day's current rows must come from
exactly one revision. Both builds write the same incremental model (their commits conflict when
they delete from the same file; the loser runs again). Registry writers that race for the same
new `meta.days` row must leave one row holding all of their fields.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from mlpipeline import quality, warehouse
from mlpipeline.core.config import Settings
from mlpipeline.features import transform
from mlpipeline.ingest import batches
from mlpipeline.quality.outcome import CheckOutcome, ExpectationOutcome
from mlpipeline.warehouse import dev_db, lake, warehouse_reader
from mlpipeline.warehouse.meta import update_day
from tests.dbt_fixtures import background, load_raw

pytestmark = pytest.mark.integration

FIRST, DAY = date(2026, 2, 1), date(2026, 2, 24)
PREVIOUS = DAY - timedelta(days=1)
ROUNDS = 3
SNAPSHOT = "SELECT cutoff_date, count(*) FROM features.customer_snapshot GROUP BY cutoff_date"
DAY_PARTITIONED = ("features.customer_snapshot", "features.customer_lifetime")
CURRENT = (
    "SELECT dt, count(DISTINCT revision), min(revision) FROM raw.transactions_current GROUP BY dt"
)


def _host(settings: Settings, name: str) -> Settings:
    """The same warehouse seen from another host: its own working folder."""
    return settings.model_copy(update={"data_dir": settings.data_dir.parent / name})


def _nightly(settings: Settings, out: str) -> None:
    began = time.monotonic()
    transform.build(DAY, settings=settings, tests=False)
    Path(out).write_text(json.dumps({"seconds": time.monotonic() - began}))


def _rerun_previous(settings: Settings, rows: list[dict], out: str) -> None:
    """A corrected revision of D-1's transactions promoted, then D-1 built again."""
    began = time.monotonic()
    with warehouse.connect(settings) as con:
        load_raw(con, "transactions", rows, revision="r2", status="validated")
        batches.promote(con, f"transactions:{PREVIOUS}", "r2", run_id="rerun")
    transform.build(PREVIOUS, settings=settings, tests=False)
    Path(out).write_text(json.dumps({"seconds": time.monotonic() - began}))


def _analyst(settings: Settings, stop, out: str) -> None:  # noqa: ANN001 - an Event
    seen: dict[str, list] = {"snapshot": [], "current": []}
    failures, queries = [], 0
    while not stop.is_set():
        try:
            with warehouse.connect(settings, read_only=True) as con:
                seen["snapshot"].append(con.execute(SNAPSHOT).fetchall())
                seen["current"].append(con.execute(CURRENT).fetchall())
            queries += 1
        except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
            failures.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.2)
    Path(out).write_text(
        json.dumps({"seen": seen, "failures": failures, "queries": queries}, default=str)
    )


@pytest.fixture()
def empty(postgres_server, tmp_path: Path) -> Settings:  # noqa: ANN001 - the cluster
    """A new warehouse, catalog in a new PostgreSQL database."""
    database = f"warehouse_{uuid.uuid4().hex[:10]}"
    postgres_server.psql("postgres", "-c", f"CREATE DATABASE {database}")
    settings = Settings.under(tmp_path / "host-a").model_copy(
        update={
            "warehouse_catalog": f"postgres:{postgres_server.libpq(database)}",
            "warehouse_data_path": f"{tmp_path / 'bucket' / 'warehouse'}/",
        }
    )
    warehouse.create(settings)
    return settings


@pytest.fixture()
def shared(empty: Settings) -> Settings:
    """The new warehouse with three weeks of raw data, features built up to D-2."""
    settings = empty
    transactions, chargebacks = background(FIRST, DAY, customers=30)
    with warehouse.connect(settings) as con:
        load_raw(con, "transactions", transactions)
        load_raw(con, "chargebacks", chargebacks)
    transform.build(PREVIOUS - timedelta(days=1), settings=settings, full_refresh=True)
    transform.build(PREVIOUS, settings=settings, tests=False)
    return settings


def test_two_nights_write_at_once_while_an_analyst_reads(shared: Settings, tmp_path: Path) -> None:
    transactions, _ = background(FIRST, DAY, customers=30)
    corrected = [
        {**row, "amount": row["amount"] * 2}
        for row in transactions
        if row["event_ts"].date() == PREVIOUS
    ]
    with warehouse.connect(shared, read_only=True) as con:
        before = con.execute(
            "SELECT sum(amount_sum_30d) FROM features.customer_snapshot WHERE cutoff_date = ?",
            [PREVIOUS],
        ).fetchall()[0][0]
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    analyst = spawn.Process(
        target=_analyst, args=(_host(shared, "analyst"), stop, str(tmp_path / "read.json"))
    )
    analyst.start()
    time.sleep(2)
    writers = [
        spawn.Process(target=_nightly, args=(_host(shared, "host-b"), str(tmp_path / "d.json"))),
        spawn.Process(
            target=_rerun_previous,
            args=(_host(shared, "host-c"), corrected, str(tmp_path / "d-1.json")),
        ),
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(600)
    time.sleep(1)
    stop.set()
    analyst.join(60)
    assert [p.exitcode for p in writers] == [0, 0]
    assert analyst.exitcode == 0

    read = json.loads((tmp_path / "read.json").read_text())
    assert read["failures"] == []
    assert read["queries"] > 10
    with warehouse.connect(shared, read_only=True) as con:
        final = dict(con.execute(SNAPSHOT).fetchall())
        after = con.execute(
            "SELECT sum(amount_sum_30d) FROM features.customer_snapshot WHERE cutoff_date = ?",
            [PREVIOUS],
        ).fetchall()[0][0]
        revisions = dict(
            con.execute(
                "SELECT dt, min(revision) FROM raw.transactions_current GROUP BY dt"
            ).fetchall()
        )
    assert DAY.isoformat() in {str(day) for day in final}, "the night of D was built"
    assert revisions[PREVIOUS] == "r2" and after > before, "D-1 was rebuilt from revision r2"
    final_counts = {str(day): count for day, count in final.items()}
    for observation in read["seen"]["snapshot"]:
        for cutoff, count in observation:
            assert count == final_counts[cutoff], (cutoff, count, final_counts[cutoff])
    for observation in read["seen"]["current"]:
        assert all(distinct == 1 for _, distinct, _ in observation), observation
    assert any(
        dict((day, revision) for day, _, revision in observation).get(PREVIOUS.isoformat()) == "r1"
        for observation in read["seen"]["current"]
    ), "the analyst read D-1 before its correction too"


def _rebuild(settings: Settings, day: date, start, log_file: str) -> None:  # noqa: ANN001 - a Barrier
    import logging

    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.getLogger("mlpipeline").addHandler(handler)
    logging.getLogger("mlpipeline").setLevel(logging.INFO)
    start.wait()
    transform.build(day, settings=settings, tests=False)


def _unbuild(settings: Settings, day: date) -> None:
    """Day D as before its first build: no rows of cutoff D in the day-partitioned models."""
    with warehouse.connect(settings) as con:
        for model in DAY_PARTITIONED:
            con.execute(f"DELETE FROM {model} WHERE cutoff_date = ?", [day])


@pytest.mark.parametrize("day", [PREVIOUS, DAY], ids=["built-day", "new-day"])
def test_two_builds_of_one_incremental_day_at_once_leave_one_of_them(
    shared: Settings, tmp_path: Path, day: date
) -> None:
    """A built day: both builds delete its rows from the same files, one commit is refused and
    that build runs again (saying so). A new day: both delete nothing, which the pinned DuckLake
    does not see as a conflict (duckdb/ducklake#1393); their claims on the model's row in
    `meta.registry_claims` are what refuses one. Either way the day holds one build's rows, one
    per customer, as many as one build alone makes."""
    if day == DAY:
        transform.build(DAY, settings=shared, tests=False)
    with warehouse.connect(shared, read_only=True) as con:
        (expected,) = con.execute(
            "SELECT count(*) FROM features.customer_snapshot WHERE cutoff_date = ?", [day]
        ).fetchall()[0]
    assert expected > 0
    spawn = multiprocessing.get_context("spawn")
    said = ""
    # The builds start together; their model steps overlap on most rounds, not all.
    for attempt in range(ROUNDS):
        if day == DAY:
            _unbuild(shared, DAY)
        start = spawn.Barrier(2)
        logs = [tmp_path / f"build-{attempt}-{i}.log" for i in range(2)]
        builds = [
            spawn.Process(target=_rebuild, args=(_host(shared, f"b{i}"), day, start, str(logs[i])))
            for i in range(2)
        ]
        for process in builds:
            process.start()
        for process in builds:
            process.join(600)
        assert [p.exitcode for p in builds] == [0, 0]
        with warehouse.connect(shared, read_only=True) as con:
            rows, invocations = con.execute(
                "SELECT count(*), count(DISTINCT dbt_invocation_id) "
                "FROM features.customer_snapshot WHERE cutoff_date = ?",
                [day],
            ).fetchall()[0]
            lifetime = con.execute(
                "SELECT count(*) - count(DISTINCT customer_id), count(DISTINCT dbt_invocation_id) "
                "FROM features.customer_lifetime WHERE cutoff_date = ?",
                [day],
            ).fetchall()[0]
        assert (rows, invocations) == (expected, 1)
        assert lifetime[0] == 0 and lifetime[1] <= 1, lifetime
        said = "".join(f.read_text() for f in logs if f.exists())
        if "lost a commit race with another writer" in said:
            break
    assert "lost a commit race with another writer" in said, said[-3000:]
    # Each build claimed the model first: what keeps two builds of a day not built yet apart
    # (the pinned DuckLake commits two transactions that each delete nothing, then insert).
    with warehouse.connect(shared, read_only=True) as con:
        claims = con.execute(
            "SELECT count(*), max(claims) FROM meta.registry_claims "
            "WHERE registry = 'features.customer_snapshot'"
        ).fetchall()[0]
    assert claims[0] >= 1 and claims[1] >= 2, claims


def test_a_reader_role_reads_production_and_cannot_write_it(
    shared: Settings,
    postgres_server,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """What the analysts' dev target attaches production with: the role setup grants
    (`warehouse_reader.grant`, run twice as each start does). Its reads work, a catalog table
    made after the grant included; a write, even through a writable attach, is refused by the
    database."""
    role, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    warehouse_reader.grant(shared.warehouse_catalog, "first-password", role)
    warehouse_reader.grant(shared.warehouse_catalog, password, role)
    database = shared.warehouse_catalog.split("dbname=")[1].split()[0]
    postgres_server.psql(database, "-c", "CREATE TABLE ducklake_added_later (x int)")
    postgres_server.psql(
        database, "-c", f"SET ROLE {role}; SELECT count(*) FROM ducklake_added_later"
    )
    reader = shared.warehouse_catalog.replace(
        f"user={postgres_server.user}", f"user={role}"
    ).replace(f"password={postgres_server.password}", f"password={password}")
    monkeypatch.setenv("WAREHOUSE_READER_CATALOG", reader)
    dev_db.create_dev(shared)
    with dev_db.connect_dev(shared) as con:
        rows = con.execute("SELECT count(*) FROM lake.raw.transactions_current").fetchall()
    assert rows[0][0] > 0
    with (
        lake.connect(reader, shared.warehouse_data_path) as con,
        pytest.raises(duckdb.Error, match="permission denied"),
    ):
        con.execute("DELETE FROM raw.transactions")
    with warehouse.connect(shared, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions_current").fetchall() == rows


def _mark(settings: Settings, field: str, value: object, days: list[str], start) -> None:  # noqa: ANN001
    start.wait()
    with warehouse.connect(settings) as con:
        for day in days:
            update_day(con, date.fromisoformat(day), **{field: value})


def test_concurrent_updates_of_new_days_leave_one_row_each(empty: Settings) -> None:
    shared = empty
    spawn = multiprocessing.get_context("spawn")
    days = [(DAY + timedelta(days=n)).isoformat() for n in range(1, 4)]
    fields = {"stale": True, "rows_to_score": 11, "export_id": "e-1", "model_version": "7"}
    start = spawn.Barrier(len(fields))
    writers = [
        spawn.Process(target=_mark, args=(_host(shared, f"w{i}"), field, value, days, start))
        for i, (field, value) in enumerate(fields.items())
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(300)
    assert [p.exitcode for p in writers] == [0] * len(fields)
    with warehouse.connect(shared, read_only=True) as con:
        rows = con.execute(
            f"SELECT day, {', '.join(fields)} FROM meta.days WHERE day > ? ORDER BY day", [DAY]
        ).fetchall()
    assert rows == [(date.fromisoformat(day), *fields.values()) for day in days]


STATUS_ROUNDS = 8


def _check(settings: Settings, batch_id: str, start) -> None:  # noqa: ANN001 - a Barrier
    """What a raw check task writes, round after round: its results, then the revision's
    status and event."""
    outcome = CheckOutcome(
        suite="raw_check",
        subject=f"{batch_id}/r1",
        rows=1,
        results=[ExpectationOutcome("expect", "a check", "amount", "critical", True, "1", "1")],
    )
    start.wait()
    with warehouse.connect(settings) as con:
        for n in range(STATUS_ROUNDS):
            quality.record(con, outcome, run_id=f"run-{n}")
            batches.set_status(con, batch_id, "r1", f"s{n}", run_id=f"run-{n}")


def test_two_raw_checks_at_once_record_every_status(empty: Settings) -> None:
    """The night's two datasets are checked on two workers at once; both write the registry
    (an update of `meta.batches` rewrites the table's inlined rows) and neither may fail."""
    batch_ids = ["transactions-2026-02-25", "chargebacks-2026-02-25"]
    now = datetime(2026, 2, 25, 1)
    with warehouse.connect(empty) as con:
        for batch_id in batch_ids:
            con.execute(
                "INSERT INTO meta.batches VALUES (?, 'r1', ?, ?, 'ingested', NULL, 'c', "
                "1, 1, 1, 0, NULL, NULL, ?, ?)",
                [batch_id, batch_id.split("-")[0], DAY, now, now],
            )
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(len(batch_ids))
    checks = [
        spawn.Process(target=_check, args=(_host(empty, f"w{i}"), batch_id, start))
        for i, batch_id in enumerate(batch_ids)
    ]
    for process in checks:
        process.start()
    for process in checks:
        process.join(300)
    assert [p.exitcode for p in checks] == [0, 0]
    last = f"s{STATUS_ROUNDS - 1}"
    with warehouse.connect(empty, read_only=True) as con:
        statuses = con.execute("SELECT batch_id, status FROM meta.batches").fetchall()
        events = con.execute(
            "SELECT batch_id, count(*), count(DISTINCT status) FROM meta.batch_events "
            "GROUP BY batch_id"
        ).fetchall()
        results = con.execute(
            "SELECT subject, count(*) FROM meta.validation_results GROUP BY subject"
        ).fetchall()
    assert sorted(statuses) == sorted((b, last) for b in batch_ids)
    assert sorted(events) == sorted((b, STATUS_ROUNDS, STATUS_ROUNDS) for b in batch_ids)
    assert sorted(results) == sorted((f"{b}/r1", STATUS_ROUNDS) for b in batch_ids)
