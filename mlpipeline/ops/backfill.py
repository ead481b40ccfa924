"""Re-running day ranges of `fraud_nightly`, oldest first: the range `fraud_backfill` accepts,
and how a release or late data starts the re-run (a `fraud_backfill` run through Airflow's REST
API when AIRFLOW_API_URL is set, otherwise the exact commands to type). The Airflow backfill
itself is `ops.nightly_backfill`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time

from mlpipeline.core.config import AirflowApiSettings, pipeline_conf
from mlpipeline.core.days import DayNotEnded, day_range, parse_day, require_ended
from mlpipeline.ops.airflow_api import AirflowApi, AirflowApiError

log = logging.getLogger(__name__)

NIGHTLY = "fraud_nightly"
BACKFILL = "fraud_backfill"


NIGHTLY_PAUSED = (
    f"{NIGHTLY} is paused, so the runs this backfill creates would wait queued and nothing would "
    f"happen. Unpause it (the toggle on its page in the Airflow UI, or `mlpipeline airflow dags "
    f"unpause {NIGHTLY}`; in the stack `airflow dags unpause {NIGHTLY}`), then trigger the "
    "backfill again. Unpausing also lets the scheduler run last night if it has not run."
)


class BackfillRangeInvalid(ValueError):
    """The requested range breaks a rule JSON schema cannot express (order, future, size)."""


def validate_range(
    start: str | date, end: str | date, *, today: date | None = None, max_days: int | None = None
) -> list[str]:
    """The days of [start, end] as ISO strings, oldest first, once the range is valid:
    start ≤ end, end already over (before today, UTC), at most `backfill.max_days` days."""
    first, last = parse_day(start), parse_day(end)
    today = today or datetime.now(UTC).date()
    limit = max_days or int(pipeline_conf()["backfill"]["max_days"])
    if first > last:
        raise BackfillRangeInvalid(f"start {first} is after end {last}; swap them")
    try:
        require_ended(last, now=datetime.combine(today, time.min, UTC))
    except DayNotEnded as exc:
        raise BackfillRangeInvalid(f"end {exc}") from exc
    days = day_range(first, last)
    if len(days) > limit:
        raise BackfillRangeInvalid(
            f"{first}..{last} is {len(days)} days, more than backfill.max_days={limit} "
            "(mlpipeline/conf/pipeline.yaml); split the range into several backfills"
        )
    return [d.isoformat() for d in days]


def rerun_commands(days: list[date]) -> list[str]:
    """What an operator types to recompute `days` in order (one backfill trigger, or one
    in-process run per day)."""
    first, last = min(days).isoformat(), max(days).isoformat()
    conf = json.dumps({"start": first, "end": last, "retrain": False, "push_online": True})
    return [
        f"mlpipeline airflow dags trigger {BACKFILL} --conf '{conf}'",
        "# or, without a scheduler, in order:",
        *(f"mlpipeline airflow dags test {NIGHTLY} {d.isoformat()}" for d in sorted(days)),
    ]


def trigger_backfill(days: list[date], api: AirflowApi, *, retrain: bool = False) -> dict:
    """Start one `fraud_backfill` run over `days`; returns the created run."""
    conf = {
        "start": min(days).isoformat(),
        "end": max(days).isoformat(),
        "retrain": retrain,
        "push_online": True,
    }
    run = api.call("POST", f"dags/{BACKFILL}/dagRuns", {"logical_date": None, "conf": conf})
    log.info("triggered %s run %s for %s", BACKFILL, run.get("dag_run_id"), conf)
    return run


def start_rerun(days: list[date], settings: AirflowApiSettings) -> list[str]:
    """Recompute `days` in order: through the API when AIRFLOW_API_URL is set, otherwise return
    the exact commands. Returns the lines to show the operator."""
    if not days:
        return ["no processed day is affected; nothing to re-run"]
    try:
        api = AirflowApi.configured(settings)
        run = trigger_backfill(days, api) if api is not None else None
    except AirflowApiError as exc:
        raise AirflowApiError(
            f"Airflow did not trigger {BACKFILL} ({exc}); run instead:\n"
            + "\n".join(rerun_commands(days)),
            exc.status,
        ) from exc
    if run is not None:
        return [f"triggered {BACKFILL} run {run.get('dag_run_id')} for {min(days)}..{max(days)}"]
    return [
        "AIRFLOW_API_URL is not set; re-run the stale days in order with:",
        *rerun_commands(days),
    ]
