"""When a run trains: on a cadence, and earlier when monitoring found the champion drifting.

Training every night is the default (`training.every_days: 1`). A team that trains less often
sets a longer cadence; monitoring then shortens it: a check listed in `monitoring.retrain_on`
that failed on a run day after the champion's training cutoff makes the next scheduled or
manual run train. A backfill never trains unless its run says so (`training_wanted`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.monitoring.checks import DRIFT_SHARE, INPUT_DRIFT, PREDICTION_DRIFT
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.monitoring.realized import REALIZED

# A name of `monitoring.retrain_on` -> the metric rows (check, metric or None: any) it reads.
TRIGGERS: dict[str, tuple[str, str | None]] = {
    "input_drift": (INPUT_DRIFT, DRIFT_SHARE),
    "score_drift": (PREDICTION_DRIFT, "score"),
    "decision_rate": (PREDICTION_DRIFT, "decision_rate"),
    "realized_performance": (REALIZED, None),
}


def every_days() -> int:
    """pipeline.yaml `training.every_days`: at least 1."""
    value = int((pipeline_conf().get("training") or {}).get("every_days", 1))
    if value < 1:
        raise ValueError(f"pipeline.yaml training.every_days must be at least 1, got {value}")
    return value


def retrain_on() -> tuple[str, ...]:
    """pipeline.yaml `monitoring.retrain_on`: names of TRIGGERS."""
    names = tuple((pipeline_conf().get("monitoring") or {}).get("retrain_on") or ())
    unknown = sorted(set(names) - set(TRIGGERS))
    if unknown:
        raise ValueError(
            f"pipeline.yaml monitoring.retrain_on lists {unknown}; use some of {sorted(TRIGGERS)}"
        )
    return names


def retrain_requests(
    settings: Settings, after: date, until: date, triggers: tuple[str, ...]
) -> list[str]:
    """Each failed trigger on a run day in (after, until], as 'DAY: check metric=value'."""
    if not triggers:
        return []
    rows = read_metrics(settings, since=after + timedelta(days=1), until=until)
    found: list[str] = []
    for row in rows[rows["status"] == "failed"].sort_values("run_day").itertuples():
        for name in triggers:
            check, metric = TRIGGERS[name]
            if row.check == check and metric in (None, row.feature_or_metric):
                value = "-" if pd.isna(row.value) else f"{row.value:.4g}"
                day = pd.Timestamp(row.run_day).date()
                found.append(f"{day}: {name} {row.feature_or_metric}={value}")
    return found


def training_due(
    settings: Settings,
    day: date,
    champion: Callable[[], date | None],
    *,
    every: int | None = None,
    triggers: tuple[str, ...] | None = None,
) -> tuple[bool, str]:
    """Whether a scheduled or manual run for `day` trains, and why; `champion` gives the
    champion's training cutoff (None: no champion), asked only when the cadence needs it."""
    every = every_days() if every is None else every
    if every == 1:
        return True, "training.every_days is 1: every run trains"
    champion_cutoff = champion()
    if champion_cutoff is None:
        return True, "no champion yet"
    age = (day - champion_cutoff).days
    if age >= every:
        return True, f"the champion's cutoff {champion_cutoff} is {age} days old (every {every})"
    triggers = retrain_on() if triggers is None else triggers
    requests = retrain_requests(settings, champion_cutoff, day, triggers)
    if requests:
        shown = "; ".join(requests[:5]) + (
            f"; and {len(requests) - 5} more" if len(requests) > 5 else ""
        )
        return True, f"monitoring asked for training since cutoff {champion_cutoff}: {shown}"
    return False, (
        f"the champion's cutoff {champion_cutoff} is {age} day(s) old (training every {every} "
        f"days) and no check of monitoring.retrain_on failed since"
    )
