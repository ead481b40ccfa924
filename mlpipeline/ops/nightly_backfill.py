"""An Airflow backfill of `fraud_nightly` over a validated range: create it, follow it, and stop
it after a failed day.

Airflow's backfill makes one run per day from the nightly's own timetable (so each run's data
interval is its day D, as for a scheduled run) and starts them oldest first, one at a time
(`max_active_runs=1`). A day already run is run again (`reprocess_behavior=completed`: the same
batch twice gives the same result). Airflow 3 does not stop a backfill after a failed run, so
the failed run's watcher cancels it (`cancel_running`): the days after it never start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from mlpipeline.ops.airflow_api import AirflowApi, AirflowApiError
from mlpipeline.ops.backfill import BACKFILL, NIGHTLY

log = logging.getLogger(__name__)


class BackfillRefused(RuntimeError):
    """Airflow would not run every day of the range; the message names the days and why."""


def _midnight(day: date) -> str:
    return datetime.combine(day, time.min, UTC).isoformat()


def create(api: AirflowApi, days: list[date], *, retrain: bool, push_online: bool) -> int:
    """Create the backfill of `days` (oldest first, one run at a time); returns its id.

    A dry run first: a day Airflow would leave out (its run is still in flight) refuses the
    whole backfill, naming the day, rather than silently skipping it."""
    body = {
        "dag_id": NIGHTLY,
        "from_date": _midnight(min(days)),
        "to_date": _midnight(max(days)),
        "run_backwards": False,
        "dag_run_conf": {"train": retrain, "push_online": push_online},
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }
    planned = api.call("POST", "backfills/dry_run", body)["backfills"]
    planned_days = {datetime.fromisoformat(p["logical_date"]).date() for p in planned}
    left_out = sorted(set(days) - planned_days)
    if left_out:
        raise BackfillRefused(
            f"{NIGHTLY} would not run {', '.join(map(str, left_out))}: a run of that day is "
            "still queued or running. Wait for it to finish (or mark it failed in the UI), then "
            "trigger the backfill again."
        )
    try:
        created = api.call("POST", "backfills", body)
    except AirflowApiError as exc:
        if exc.status == 409:
            raise BackfillRefused(
                f"a backfill of {NIGHTLY} is already running (Airflow runs one at a time): "
                "wait for it, or cancel it on the Backfills tab of its page, then trigger "
                "again"
            ) from exc
        raise
    log.info("created backfill %s of %s for %s..%s", created["id"], NIGHTLY, days[0], days[-1])
    return int(created["id"])


@dataclass(frozen=True)
class Progress:
    """Where a backfill stands: each day's run state (None: no run yet), and whether Airflow
    considers the backfill complete (every run finished, or cancelled: a cancelled backfill is
    complete at once, while the run that failed may still be finishing its final tasks)."""

    states: dict[date, str | None]
    complete: bool

    @property
    def finished(self) -> bool:
        """Complete, and no run of it still queued or running."""
        return self.complete and not any(s in {"queued", "running"} for s in self.states.values())

    @property
    def failed_day(self) -> date | None:
        """The first day whose run failed: the one the backfill stopped at."""
        return min((d for d, s in self.states.items() if s == "failed"), default=None)

    @property
    def succeeded(self) -> list[date]:
        return sorted(d for d, s in self.states.items() if s == "success")

    def summary(self) -> str:
        done = len(self.succeeded)
        return f"{done}/{len(self.states)} days done" + (
            f", {self.failed_day} failed" if self.failed_day else ""
        )

    def failure(self) -> str | None:
        """Once finished, why the backfill did not recompute every day, naming the failed day
        and the days it then left out; None while it runs or when every day succeeded."""
        if not self.finished:
            return None
        failed = self.failed_day
        if failed is None:
            if len(self.succeeded) == len(self.states):
                return None
            missing = [str(d) for d, s in sorted(self.states.items()) if s != "success"]
            return f"the backfill completed without running {', '.join(missing)}"
        not_run = [str(d) for d in sorted(self.states) if d > failed]
        return (
            f"{NIGHTLY} failed for {failed} (see that run's failed task); the backfill stopped "
            "there" + (f" and did not run {', '.join(not_run)}" if not_run else "") + ". Fix "
            f"the cause, then trigger {BACKFILL} again from {failed}."
        )


def progress(api: AirflowApi, backfill_id: int, days: list[date]) -> Progress:
    """The backfill's state and the state of the nightly run of each of `days`."""
    backfill = api.call("GET", f"backfills/{backfill_id}")
    runs = api.call(
        "GET",
        f"dags/{NIGHTLY}/dagRuns",
        logical_date_gte=_midnight(min(days)),
        logical_date_lte=_midnight(max(days)),
        limit=len(days) + 1,
    )["dag_runs"]
    by_day = {datetime.fromisoformat(r["logical_date"]).date(): r["state"] for r in runs}
    return Progress(
        states={d: by_day.get(d) for d in days},
        complete=backfill["completed_at"] is not None,
    )


def cancel(api: AirflowApi, backfill_id: int) -> None:
    """Stop the backfill: Airflow fails its queued runs and starts no more (a run in progress
    finishes). Cancelling a backfill that has completed meanwhile is not an error."""
    try:
        api.call("PUT", f"backfills/{backfill_id}/cancel")
    except AirflowApiError as exc:
        if exc.status != 409:
            raise
    log.info("cancelled backfill %s of %s", backfill_id, NIGHTLY)


def cancel_running(api: AirflowApi) -> int | None:
    """Cancel the backfill of the nightly that is running, if any (Airflow allows one per DAG);
    returns its id."""
    listed: list[dict[str, Any]] = api.call(
        "GET", "backfills", dag_id=NIGHTLY, order_by="-id", limit=5
    )["backfills"]
    running = [b for b in listed if b["completed_at"] is None]
    for backfill in running:
        cancel(api, int(backfill["id"]))
    return int(running[0]["id"]) if running else None


def stop_after_failed_run() -> str:
    """What a failed backfill run of the nightly does so that the later days do not start:
    cancel the running backfill. Returns the line for the run's log."""
    try:
        api = AirflowApi.configured()
        if api is None:
            return (
                "this backfill run failed but AIRFLOW_API_URL is not set on this worker, so "
                "the backfill could not be cancelled: later days may still run; cancel it on "
                f"the Backfills tab of {NIGHTLY}"
            )
        cancelled = cancel_running(api)
    except AirflowApiError as exc:
        return f"this backfill run failed and cancelling its backfill failed too ({exc})"
    if cancelled is None:
        return "this backfill run failed; its backfill had already completed"
    return f"this backfill run failed: backfill {cancelled} is cancelled, later days will not run"
