"""Freshness of a monitored day: the online snapshot's age at the day's end and the landing delay
of its batches, graded on the scheduled nightly's run only.

Each test registers the day's batches in a real warehouse's registry (`meta.batches`, through
`batches.register` and `promote`) with the ingestion times a night would have recorded, and
records the online switch, rollback and release events in the object store as the online store
does (`online.record_event`). No model exists: the drift checks have nothing to compare, which
freshness does not need.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from mlpipeline import online, warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.days import cutoff_ts
from mlpipeline.core.landing import DATASETS
from mlpipeline.core.objectstore import from_settings
from mlpipeline.ingest import batches
from mlpipeline.ingest.revisions import batch_id_for
from mlpipeline.monitoring.conf import MonitoringConf
from mlpipeline.monitoring.freshness import FRESHNESS, LANDING_DELAY, NOT_GRADED, SNAPSHOT_AGE
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.monitoring.monitor import monitor_day
from mlpipeline.monitoring.summary import MonitoringSummary
from mlpipeline.ops.alerts import monitoring_alert
from mlpipeline.pipeline import nightly
from mlpipeline.pipeline.nightly.monitoring import checked
from mlpipeline.warehouse.meta import ensure_meta

pytestmark = pytest.mark.unit

DAY = date(2026, 3, 10)
END = cutoff_ts(DAY)


def _at(moment: datetime) -> str:
    """A time in the form the online store records events with (`keys.utc_now`)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _switch(settings: Settings, cutoff: date, at: datetime, **event: object) -> None:
    online.record_event(
        from_settings(settings),
        {
            "action": "switch",
            "outcome": "switched",
            "export_id": f"export-{cutoff}",
            "cutoff": cutoff.isoformat(),
            "at": _at(at),
            **event,
        },
    )


def _land(settings: Settings, day: date, ingested: dict[str, datetime]) -> None:
    """Register and promote each dataset's batch of `day`, ingested at the given time."""
    with warehouse.connect(settings) as con:
        ensure_meta(con)
        for dataset, at in ingested.items():
            batch_id = batch_id_for(dataset, day)
            prepared = batches.PreparedRevision(
                dataset=dataset,
                day=day.isoformat(),
                batch_id=batch_id,
                revision=f"rev-{dataset}",
                content_checksum="0" * 64,
                source_objects=[],
                rows_declared=10,
                rows_read=10,
                rows_written=10,
                rows_rejected=0,
                object_key=f"raw/{dataset}/dt={day}/rev=rev-{dataset}/part-0.parquet",
                rejects_key=None,
            )
            batches.register(con, prepared, status="validated", run_id="night")
            batches.promote(con, batch_id, prepared.revision, run_id="night")
            con.execute("UPDATE meta.batches SET created_at = ? WHERE batch_id = ?", [at, batch_id])


def _on_time_night(settings: Settings) -> None:
    """Yesterday's snapshot switched in the night before; the day's batches just after its end."""
    _switch(settings, DAY - timedelta(days=2), END - timedelta(days=2, hours=-3))
    _switch(settings, DAY - timedelta(days=1), END - timedelta(hours=21))
    _land(settings, DAY, {d: END + timedelta(minutes=40) for d in DATASETS})


def _late_night(settings: Settings) -> None:
    """Yesterday's snapshot was rolled back in the afternoon (the one before is live at the
    day's end; the release that switches forward again comes after it); transactions landed
    9.5 hours after the day's end, chargebacks 26 hours after it."""
    _switch(settings, DAY - timedelta(days=2), END - timedelta(days=2, hours=-3))
    _switch(settings, DAY - timedelta(days=1), END - timedelta(hours=21))
    _switch(
        settings,
        DAY - timedelta(days=2),
        END - timedelta(hours=9),
        action="rollback",
        outcome="rolled back",
    )
    release_at = END + timedelta(hours=1)
    _switch(
        settings,
        DAY - timedelta(days=1),
        release_at,
        action="release",
        outcome="released",
        switch={
            "outcome": "switched",
            "export_id": f"export-{DAY - timedelta(days=1)}",
            "cutoff": (DAY - timedelta(days=1)).isoformat(),
            "at": _at(release_at),
        },
    )
    _land(
        settings,
        DAY,
        {
            "transactions": END + timedelta(hours=9, minutes=30),
            "chargebacks": END + timedelta(hours=26),
        },
    )


def _freshness(rows: pd.DataFrame) -> dict[str, pd.Series]:
    part = rows[rows["check"] == FRESHNESS]
    return {row["feature_or_metric"]: row for _, row in part.iterrows()}


TRANSACTIONS = f"{LANDING_DELAY}:{batch_id_for('transactions', DAY)}"
CHARGEBACKS = f"{LANDING_DELAY}:{batch_id_for('chargebacks', DAY)}"


def test_an_on_time_day_is_fresh(settings: Settings) -> None:
    _on_time_night(settings)
    summary = monitor_day(settings, DAY, graded_freshness=True)
    rows = _freshness(summary.rows)
    assert set(rows) == {SNAPSHOT_AGE, TRANSACTIONS, CHARGEBACKS}
    assert {name: row["status"] for name, row in rows.items()} == dict.fromkeys(rows, "ok")
    age = rows[SNAPSHOT_AGE]
    assert age["value"] == 24.0 and age["threshold"] == 48.0
    assert f"export-{DAY - timedelta(days=1)}" in age["method"] and "(switch)" in age["method"]
    assert age["reference"] == f"the day's end, {END} UTC"
    assert rows[TRANSACTIONS]["value"] == pytest.approx(40 / 60)
    assert "revision rev-transactions ingested 2026-03-11 00:40:00" in rows[TRANSACTIONS]["method"]
    # Freshness ok: the day's status is the drift checks' (no model yet, nothing to compare).
    assert summary.status == "no_reference"
    assert "freshness" in summary.text() and TRANSACTIONS in summary.text()


def test_a_late_batch_and_a_stale_snapshot_are_flagged_with_day_batch_and_delay(
    settings: Settings,
) -> None:
    _late_night(settings)
    summary = monitor_day(settings, DAY, graded_freshness=True)
    rows = _freshness(summary.rows)
    age = rows[SNAPSHOT_AGE]
    assert (age["value"], age["status"]) == (48.0, "warning")
    assert f"cutoff {DAY - timedelta(days=2)}" in age["method"] and "(rollback)" in age["method"]
    assert (rows[TRANSACTIONS]["value"], rows[TRANSACTIONS]["status"]) == (9.5, "warning")
    assert (rows[CHARGEBACKS]["value"], rows[CHARGEBACKS]["status"]) == (26.0, "failed")
    assert summary.status == "failed"
    result = checked(summary.result(), MonitoringConf.load().actions)
    alert = monitoring_alert(result)
    assert alert is not None and f"for day {DAY}" in alert.subject
    assert f"freshness {CHARGEBACKS}: 26 (warning at 6.0)" in alert.text
    assert f"freshness {TRANSACTIONS}: 9.5 (warning at 6.0)" in alert.text
    assert f"freshness {SNAPSHOT_AGE}: 48 (warning at 48.0)" in alert.text


def test_a_backfill_or_manual_run_records_freshness_ungraded(settings: Settings) -> None:
    from airflow.utils.types import DagRunType  # the DAG hands the stage the run's own type

    _late_night(settings)
    for run_type in (DagRunType.BACKFILL_JOB, DagRunType.MANUAL, "manual"):
        result = nightly.monitor(DAY.isoformat(), "backfill__x", run_type=run_type)
        assert result["status"] == "no_reference" and not result["alert"]
        rows = _freshness(read_metrics(settings, DAY))
        assert {row["status"] for row in rows.values()} == {"ok"}
        assert all(row["method"].endswith(NOT_GRADED) for row in rows.values())
        assert rows[CHARGEBACKS]["value"] == 26.0 and pd.isna(rows[CHARGEBACKS]["threshold"])
    # `mlpipeline monitor run` over a range (library default) does not grade either.
    assert _freshness(monitor_day(settings, DAY).rows)[CHARGEBACKS]["status"] == "ok"


def test_a_rerun_keeps_what_the_scheduled_run_graded(settings: Settings) -> None:
    from airflow.utils.types import DagRunType

    _late_night(settings)
    graded = nightly.monitor(DAY.isoformat(), "scheduled__x", run_type=DagRunType.SCHEDULED)
    assert graded["status"] == "failed" and graded["alert"]
    before = _freshness(read_metrics(settings, DAY))
    rerun = monitor_day(settings, DAY)
    after = _freshness(rerun.rows)
    assert rerun.status == "failed"
    for name, row in before.items():
        assert (after[name]["status"], after[name]["value"]) == (row["status"], row["value"])
    # Another run day (a catch-up monitoring D later) has no grading to keep.
    later = monitor_day(settings, DAY, run_day=DAY + timedelta(days=3))
    assert {row["status"] for row in _freshness(later.rows).values()} == {"ok"}


def test_nothing_to_time_has_no_reference(settings: Settings) -> None:
    """No switch recorded yet, no transactions batch current: said, not graded."""
    _land(settings, DAY, {"chargebacks": END + timedelta(minutes=30)})
    summary = monitor_day(settings, DAY, graded_freshness=True)
    rows = _freshness(summary.rows)
    assert rows[SNAPSHOT_AGE]["status"] == "no_reference"
    assert "no online switch recorded" in rows[SNAPSHOT_AGE]["reference"]
    assert rows[TRANSACTIONS]["status"] == "no_reference"
    assert "mlpipeline batches show transactions-2026-03-10" in rows[TRANSACTIONS]["reference"]
    assert rows[CHARGEBACKS]["status"] == "ok"


def test_nothing_to_time_does_not_lower_an_ok_day() -> None:
    """No online store yet (no switch ever recorded): the day's status stays its checks'."""
    graded = {"check": "input_drift", "feature_or_metric": "drift_share", "value": 0.0}
    untimed = {"check": FRESHNESS, "feature_or_metric": SNAPSHOT_AGE, "value": None}
    rows = pd.DataFrame(
        [
            {**graded, "status": "ok", "drifted": False},
            {**untimed, "status": "no_reference", "drifted": None},
        ]
    ).assign(run_day=DAY, scored_day=DAY, model_version="3")
    assert MonitoringSummary.from_rows(rows).status == "ok"
