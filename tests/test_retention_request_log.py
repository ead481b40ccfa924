"""Retention of the request log and of the snapshot exports its requests were served from: request
files written by the service's `RequestLog`, days replayed by the monitoring stage's entry point
(`monitor_day`, publishing the metrics table) in moto's S3, the online pointers in Redis."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore, S3Store, from_settings
from mlpipeline.features.export import EXPORT_ID_TIME, MANIFEST_NAME, export_prefix
from mlpipeline.monitoring.monitor import monitor_day
from mlpipeline.ops.retention.exports import clean_exports
from mlpipeline.ops.retention.request_log import clean_request_log
from mlpipeline.scoring.request_log import RequestLog, day_prefix, read_requests, served_record
from mlpipeline.scoring.schemas import ScoreResult, Transaction
from tests.test_retention import dry_real_again
from tests.test_score import FEATURES_SQL

pytestmark = pytest.mark.integration

REPLAYED, UNREPLAYED = date(2026, 1, 5), date(2026, 1, 6)  # days of FEATURES_SQL
AGE = timedelta(days=30)
EXPORT_AGE = timedelta(days=14)
RETENTION_LOGGER = "mlpipeline.ops.retention.request_log"


@pytest.fixture()
def s3_settings(settings: Settings, s3_store: S3Store) -> Settings:
    """The request log, exports and metrics table in an S3 bucket (moto), the warehouse local,
    holding the stand-in feature rows the replay reads."""
    with warehouse.connect(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        con.execute(FEATURES_SQL)
    return settings.model_copy(
        update={"bucket": s3_store.bucket, "aws_endpoint_url": s3_store.client.meta.endpoint_url}
    )


def _export(store: ObjectStore, cutoff: date, created: datetime) -> tuple[str, str]:
    """A complete export folder made `created`: its id and prefix."""
    export_id = f"{created:{EXPORT_ID_TIME}}-0000abcd"
    prefix = export_prefix(cutoff, export_id)
    store.put_bytes(prefix + "part-00000.parquet", b"rows")
    store.put_bytes(prefix + MANIFEST_NAME, b"{}")
    return export_id, prefix


def _log_requests(store: ObjectStore, day: date, export_id: str, count: int = 5) -> None:
    """`count` answered requests of `day` served from `export_id`, as the service logs them."""
    example = Transaction.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    log = RequestLog(store, queue_size=100, batch_size=2, flush_seconds=0.05)
    for i in range(count):
        transaction = Transaction.model_validate({**example, "transaction_id": f"req-{day}-{i}"})
        answer = ScoreResult(
            transaction_id=transaction.transaction_id,
            customer_id=transaction.customer_id,
            score=0.1,
            decision=False,
            decision_threshold=0.5,
            model_name="fraud_detector",
            model_version="1",
            snapshot_cutoff=str(day - timedelta(days=1)),
            snapshot_export_id=export_id,
            customer_known=True,
        )
        requested = datetime.combine(day, time(10, i), UTC)
        log.record(
            served_record(
                requested, transaction.model_dump(), {"txn_count_24h": i}, answer.model_dump()
            )
        )
    log.close()
    assert log.stats().written == count


def test_request_log_and_its_exports_are_kept_until_replayed_then_follow_the_age(
    s3_settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = from_settings(s3_settings)
    created = datetime.combine(REPLAYED, time(), UTC) - timedelta(days=1)
    replayed_export, replayed_prefix = _export(store, REPLAYED, created - timedelta(hours=2))
    unreplayed_export, unreplayed_prefix = _export(store, UNREPLAYED, created)
    _, unreferenced_prefix = _export(store, UNREPLAYED, created - timedelta(hours=1))
    _log_requests(store, REPLAYED, replayed_export)
    _log_requests(store, UNREPLAYED, unreplayed_export)
    replayed_files = len(store.list(day_prefix(REPLAYED)))
    monitor_day(s3_settings, REPLAYED)  # the nightly's replay of REPLAYED only

    def log_state() -> list[str]:
        return store.list("serving/")

    def clean_log(now: datetime):
        return lambda dry_run: clean_request_log(store, now=now, max_age=AGE, dry_run=dry_run)

    # Young: the replayed day stays within the age; nothing goes.
    young = clean_log(datetime.combine(UNREPLAYED, time(), UTC) + timedelta(days=3))(False)
    assert young.deleted == []
    assert young.kept == {
        "replayed, within the age": [day_prefix(REPLAYED)],
        "not replayed yet": [day_prefix(UNREPLAYED)],
    }

    # Old: the replayed day goes, the unreplayed one stays, logged with its replay command.
    old = datetime.combine(UNREPLAYED, time(), UTC) + AGE + timedelta(days=5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=RETENTION_LOGGER):
        report = dry_real_again(clean_log(old), log_state)
    assert report.deleted == [{"item": day_prefix(REPLAYED), "files": replayed_files}]
    assert report.kept_items() == {day_prefix(UNREPLAYED)}
    command = f"mlpipeline monitor run --start {UNREPLAYED} --end {UNREPLAYED}"
    warnings = [r.getMessage() for r in caplog.records if r.name == RETENTION_LOGGER]
    assert warnings and all(day_prefix(UNREPLAYED) in w and command in w for w in warnings)
    assert read_requests(store, REPLAYED).empty
    assert len(read_requests(store, UNREPLAYED)) == 5

    # Exports: the unreplayed day's is kept whatever its age; the others are old and go.
    def clean_old_exports(dry_run: bool):
        return clean_exports(store, redis_url, now=old, max_age=EXPORT_AGE, dry_run=dry_run)

    exports = dry_real_again(clean_old_exports, lambda: store.list("features/"))
    assert exports.deleted_items() == sorted([replayed_prefix, unreferenced_prefix])
    assert exports.kept == {"served requests not replayed yet (request log)": [unreplayed_prefix]}

    # Once replayed, the day and its export follow the ages like the others.
    monitor_day(s3_settings, UNREPLAYED)
    assert clean_log(old)(False).deleted_items() == [day_prefix(UNREPLAYED)]
    assert clean_old_exports(False).deleted_items() == [unreplayed_prefix]
    assert log_state() == [] and store.list("features/") == []


def test_a_replay_before_the_day_ended_does_not_count(settings: Settings) -> None:
    """Monitoring run while the day is still being served may miss its later requests."""
    store = from_settings(settings)
    with warehouse.connect(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        con.execute(FEATURES_SQL)
    today = datetime.now(UTC).date()
    _log_requests(store, today, "20260101T000000000000Z-0000abcd")
    monitor_day(settings, today)
    later = datetime.combine(today, time(), UTC) + AGE * 2
    report = clean_request_log(store, now=later, max_age=AGE, dry_run=False)
    assert report.deleted == []
    assert list(report.kept) == [
        "not replayed yet, older than the age: replay it with "
        "`mlpipeline monitor run --start D --end D`"
    ]
    assert len(read_requests(store, today)) == 5
