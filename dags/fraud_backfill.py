"""
### fraud_backfill — re-run `fraud_nightly` over a range of days, oldest first (manual only)

Trigger it from the UI form (or `airflow dags trigger fraud_backfill --conf '{...}'`) with:

- **start**, **end** — the first and last processing day (YYYY-MM-DD), both included;
- **retrain** — train and evaluate candidates in each run (default: no, score with the champion);
- **push_online** — push each day's snapshot to Redis and switch it in (default: yes).

`validate_range` rejects what the form's JSON schema cannot (start after end, a day that has not
ended, a range above `backfill.max_days`) before anything runs, and fails at once when
`fraud_nightly` is paused (its runs would wait queued for ever): unpause it first.
`create_backfill` then creates an **Airflow backfill** of `fraud_nightly` (REST `backfills`
API): one run per day, oldest first and one at a time, each with the `train` and `push_online`
params and the day as its data interval, so the same tables as the nightly runs leave. A day
whose run is still in flight refuses the backfill, naming the day. `await_backfill` follows it
(the backfill also shows on the Backfills tab of `fraud_nightly`) and fails naming the day that
failed: that run's watcher has cancelled the backfill, so the later days do not run. Use it
after a release from quarantine or late data: one trigger recomputes the day and every later day
in order. A failed task alerts the destinations configured for alerts (`MLPIPELINE_ALERT_*`).

Its tasks call Airflow's REST API at `AIRFLOW_API_URL` with `AIRFLOW_API_TOKEN`, or
`AIRFLOW_API_USERNAME` / `AIRFLOW_API_PASSWORD` (docker-compose and `make ui` set them).
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from mlpipeline_airflow.alerts import FailureAlert

from mlpipeline.ops import backfill, nightly_backfill
from mlpipeline.ops.airflow_api import AirflowApi

log = logging.getLogger(__name__)


def _api() -> AirflowApi:
    api = AirflowApi.configured()
    if api is None:
        raise AirflowFailException(
            "AIRFLOW_API_URL is not set on this worker: fraud_backfill creates the backfill "
            "through Airflow's REST API. Set it (and AIRFLOW_API_TOKEN, or "
            "AIRFLOW_API_USERNAME / AIRFLOW_API_PASSWORD) in the workers' environment."
        )
    return api


@dag(
    dag_id="fraud_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-platform", "on_failure_callback": FailureAlert()},
    doc_md=__doc__,
    tags=["fraud", "backfill"],
    params={
        "start": Param(type="string", format="date", description="First day (YYYY-MM-DD)."),
        "end": Param(type="string", format="date", description="Last day (YYYY-MM-DD)."),
        "retrain": Param(False, type="boolean", description="Train candidates in each run."),
        "push_online": Param(True, type="boolean", description="Push each snapshot to Redis."),
    },
)
def fraud_backfill() -> None:
    @task(retries=0)
    def validate_range() -> list[str]:
        context = get_current_context()
        params = context["params"]
        try:
            days = backfill.validate_range(params["start"], params["end"])
        except backfill.BackfillRangeInvalid as exc:
            raise AirflowFailException(str(exc)) from exc
        if context["ti"].get_dag(backfill.NIGHTLY).is_paused:
            raise AirflowFailException(backfill.NIGHTLY_PAUSED)
        return days

    @task(retries=0)
    def create_backfill(days: list[str]) -> int:
        params = get_current_context()["params"]
        try:
            return nightly_backfill.create(
                _api(),
                [date.fromisoformat(d) for d in days],
                retrain=bool(params["retrain"]),
                push_online=bool(params["push_online"]),
            )
        except nightly_backfill.BackfillRefused as exc:
            raise AirflowFailException(str(exc)) from exc

    # A sensor in reschedule mode: between checks it holds no worker slot, however long the
    # backfill takes.
    @task.sensor(poke_interval=30, timeout=7 * 24 * 3600, mode="reschedule", retries=0)
    def await_backfill(backfill_id: int, days: list[str]) -> PokeReturnValue:
        api = _api()
        status = nightly_backfill.progress(api, backfill_id, [date.fromisoformat(d) for d in days])
        log.info("backfill %s: %s", backfill_id, status.summary())
        if status.failed_day is not None and not status.complete:
            # The failed run's watcher cancels the backfill; this covers a watcher that could
            # not reach the API.
            nightly_backfill.cancel(api, backfill_id)
        failure = status.failure()
        if failure is not None:
            raise AirflowFailException(failure)
        return PokeReturnValue(is_done=status.finished, xcom_value=status.summary())

    days = validate_range()
    await_backfill(create_backfill(days), days)


fraud_backfill()
