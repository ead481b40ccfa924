"""Freshness of day D: how old the online snapshot was at D's end, how late D's batches landed.

Rows (check `freshness`), values in hours:

- `online_snapshot_age_hours`: D's end (cutoff_ts(D)) minus the end of the cutoff whose export
  was live online then, from the recorded switch, rollback and release events
  (`online.admin.live_at`). By the as-of rule cutoff D-1 is live at D's end (cutoff D becomes
  available only publication_lag_hours later), so a daily publication on time reads 24; each
  missed night adds 24. Graded by `monitoring.checks.snapshot_age`.
- `landing_delay_hours:<batch id>`, one per dataset: when the batch's current revision was
  ingested (`meta.batches.created_at`; the ingest follows the landing within the landing
  sensors' poke interval) minus D's end. Graded by `monitoring.checks.landing_delay`.

Only the scheduled nightly's run of its own day is graded: a catch-up, backfill, demo, manual or
re-run monitors a day long after its end by design, so its rows keep the values with status `ok`
and say they are not graded, and a re-run keeps the rows a scheduled run graded for its run day.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.days import cutoff_ts, parse_day
from mlpipeline.core.landing import DATASETS
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ingest.revisions import batch_id_for
from mlpipeline.monitoring.checks import Row, no_reference_row
from mlpipeline.monitoring.conf import CheckThresholds, MonitoringConf
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.online.admin import live_at

FRESHNESS = "freshness"
SNAPSHOT_AGE = "online_snapshot_age_hours"
LANDING_DELAY = "landing_delay_hours"
NOT_GRADED = (
    "not graded: a catch-up, backfill, manual or re-run monitors the day after its end by design"
)
ROW_FIELDS = (
    "check",
    "feature_or_metric",
    "method",
    "value",
    "threshold",
    "drifted",
    "status",
    "reference",
    "rows_current",
    "rows_reference",
)


def day_rows(
    settings: Settings,
    store: ObjectStore,
    day: date,
    run_day: date,
    conf: MonitoringConf,
    *,
    graded: bool,
) -> list[Row]:
    """Day `day`'s freshness rows, graded when this is the scheduled run of its own day."""
    end = cutoff_ts(day)
    measured = [
        _snapshot_row(store, end, conf.checks["snapshot_age"]),
        *_landing_rows(settings, day, end, conf.checks["landing_delay"]),
    ]
    rows = [{"reference": f"the day's end, {end} UTC", **row} for row in measured]
    if graded:
        return rows
    return _graded_before(settings, run_day, day) or [_ungraded(row) for row in rows]


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600


def _graded_row(metric: str, method: str, hours: float, levels: CheckThresholds) -> Row:
    return {
        "check": FRESHNESS,
        "feature_or_metric": metric,
        "method": method,
        "value": hours,
        "threshold": levels.warning,
        "drifted": hours >= levels.warning,
        "status": levels.status(hours),
    }


def _snapshot_row(store: ObjectStore, end: datetime, levels: CheckThresholds) -> Row:
    live = live_at(store, end)
    if live is None:
        return no_reference_row(
            FRESHNESS, SNAPSHOT_AGE, f"no online switch recorded before the day's end {end}"
        )
    cutoff = parse_day(live["cutoff"])
    return _graded_row(
        SNAPSHOT_AGE,
        f"export {live['export_id']} (cutoff {cutoff}) live since {live['at']} ({live['action']})",
        _hours(end, cutoff_ts(cutoff)),
        levels,
    )


def _landing_rows(
    settings: Settings, day: date, end: datetime, levels: CheckThresholds
) -> list[Row]:
    with warehouse.connect(settings, read_only=True) as con:  # meta: made by warehouse setup
        current = {
            batch_id: (revision, created_at)
            for batch_id, revision, created_at in con.execute(
                "SELECT batch_id, revision, created_at FROM meta.batches "
                "WHERE dt = ? AND status = 'current'",
                [day],
            ).fetchall()
        }
    rows = []
    for batch_id in (batch_id_for(dataset, day) for dataset in DATASETS):
        metric = f"{LANDING_DELAY}:{batch_id}"
        if batch_id not in current:
            reason = (
                f"batch {batch_id} has no current revision (quarantined, discarded or not "
                f"ingested): see `mlpipeline batches show {batch_id}`"
            )
            rows.append(no_reference_row(FRESHNESS, metric, reason))
            continue
        revision, ingested = current[batch_id]
        rows.append(
            _graded_row(
                metric,
                f"current revision {revision} ingested {ingested:%Y-%m-%d %H:%M:%S} UTC",
                _hours(ingested, end),
                levels,
            )
        )
    return rows


def _ungraded(row: Row) -> Row:
    if row["status"] == "no_reference":
        return row
    method = f"{row['method']}; {NOT_GRADED}"
    return {**row, "method": method, "threshold": None, "drifted": None, "status": "ok"}


def _graded_before(settings: Settings, run_day: date, day: date) -> list[Row]:
    """The freshness rows a scheduled run graded for `run_day` and `day`: a re-run keeps them."""
    rows = read_metrics(settings, run_day)
    kept = rows[(rows["check"] == FRESHNESS) & (pd.to_datetime(rows["scored_day"]).dt.date == day)]
    if not kept["threshold"].notna().any():
        return []
    return [
        {name: (None if pd.isna(row[name]) else row[name]) for name in ROW_FIELDS}
        for _, row in kept.iterrows()
    ]
