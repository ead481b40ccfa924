"""Re-running day ranges of `fraud_nightly`, oldest first: what `fraud_backfill` validates and
triggers, and how a release or late data starts the re-run (Airflow's REST API when configured,
otherwise the exact commands to type).

Plain Python: the REST calls use the standard library, so the library still never imports
Airflow.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, time
from typing import Any

from mlpipeline.core.config import AirflowApiSettings, pipeline_conf
from mlpipeline.core.days import DayNotEnded, day_range, parse_day, require_ended

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


def nightly_runs(
    days: list[str], *, retrain: bool, push_online: bool, parent_run_id: str
) -> list[dict[str, Any]]:
    """One `fraud_nightly` trigger per day, oldest first: run id and params of each run.

    The runs carry no logical date (the `day` param names D), so they never collide with the
    scheduled run of the same day."""
    return [
        {
            "trigger_run_id": f"{BACKFILL}__{day}__{parent_run_id}",
            "conf": {"day": day, "train": retrain, "push_online": push_online},
        }
        for day in sorted(days)
    ]


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


def _api_headers(base: str, api: AirflowApiSettings) -> dict[str, str]:
    """Bearer token for Airflow's REST API: AIRFLOW_API_TOKEN, or one fetched from /auth/token
    with AIRFLOW_API_USERNAME / AIRFLOW_API_PASSWORD."""
    token = api.token.get_secret_value() if api.token else None
    if not token:
        user, password = api.username, api.password
        if not user or not password:
            raise RuntimeError(
                "AIRFLOW_API_URL is set but no credentials: set AIRFLOW_API_TOKEN, or "
                "AIRFLOW_API_USERNAME and AIRFLOW_API_PASSWORD"
            )
        body = json.dumps({"username": user, "password": password.get_secret_value()}).encode()
        request = urllib.request.Request(
            f"{base}/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - configured URL
            token = json.loads(response.read())["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def trigger_backfill(
    days: list[date], *, api: AirflowApiSettings, retrain: bool = False
) -> dict[str, Any]:
    """Start one `fraud_backfill` run over `days` through Airflow's REST API (`api.url`).

    Returns the created run; raises with the commands to type when the API refuses."""
    base = str(api.url).rstrip("/")
    conf = {
        "start": min(days).isoformat(),
        "end": max(days).isoformat(),
        "retrain": retrain,
        "push_online": True,
    }
    payload = json.dumps({"logical_date": None, "conf": conf}).encode()
    try:
        request = urllib.request.Request(
            f"{base}/api/v2/dags/{BACKFILL}/dagRuns",
            data=payload,
            headers=_api_headers(base, api),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - configured URL
            run = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a refused login or a refused run
        detail = exc.read().decode(errors="replace")[:500]
        raise RuntimeError(
            f"Airflow API at {base} refused to trigger {BACKFILL} ({exc.code}: {detail}); "
            "run instead:\n" + "\n".join(rerun_commands(days))
        ) from exc
    log.info("triggered %s run %s for %s", BACKFILL, run.get("dag_run_id"), conf)
    return run


def start_rerun(days: list[date], api: AirflowApiSettings) -> list[str]:
    """Recompute `days` in order: through the API when AIRFLOW_API_URL is set, otherwise return
    the exact commands. Returns the lines to show the operator."""
    if not days:
        return ["no processed day is affected; nothing to re-run"]
    if api.url:
        run = trigger_backfill(days, api=api)
        return [f"triggered {BACKFILL} run {run.get('dag_run_id')} for {min(days)}..{max(days)}"]
    return [
        "AIRFLOW_API_URL is not set; re-run the stale days in order with:",
        *rerun_commands(days),
    ]
