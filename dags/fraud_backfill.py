"""
### fraud_backfill — re-run `fraud_nightly` over a range of days, oldest first (manual only)

Trigger it from the UI form (or `airflow dags trigger fraud_backfill --conf '{...}'`) with:

- **start**, **end** — the first and last processing day (YYYY-MM-DD), both included;
- **retrain** — train and evaluate candidates in each run (default: no, score with the champion);
- **push_online** — push each day's snapshot to Redis and switch it in (default: yes).

`validate_range` rejects what the form's JSON schema cannot (start after end, a day that has not
ended, a range above `backfill.max_days`) before anything runs, and fails at once when
`fraud_nightly` is paused (its runs would wait queued for ever): unpause it first. Then one
`fraud_nightly` run per day is created and awaited, oldest first and one at a time, each with
the `day`, `train` and `push_online` params: the same tables as the nightly runs leave. Use it
after a release from quarantine or late data: one trigger recomputes the day and every later day
in order. A failed task alerts the destinations configured for alerts (`MLPIPELINE_ALERT_*`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from mlpipeline_airflow.alerts import FailureAlert

from mlpipeline.ops import backfill


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
    def validate_range() -> list[dict]:
        context = get_current_context()
        params = context["params"]
        try:
            days = backfill.validate_range(params["start"], params["end"])
        except backfill.BackfillRangeInvalid as exc:
            raise AirflowFailException(str(exc)) from exc
        if context["ti"].get_dag(backfill.NIGHTLY).is_paused:
            raise AirflowFailException(backfill.NIGHTLY_PAUSED)
        return backfill.nightly_runs(
            days,
            retrain=bool(params["retrain"]),
            push_online=bool(params["push_online"]),
            parent_run_id=str(context["run_id"]),
        )

    # Mapped instances run one at a time in map-index order (the scheduler queues them by
    # index): each creates one day's run and waits for it before the next day starts.
    TriggerDagRunOperator.partial(
        task_id="run_nightly",
        trigger_dag_id=backfill.NIGHTLY,
        logical_date=None,
        wait_for_completion=True,
        fail_when_dag_is_paused=True,
        poke_interval=30,
        max_active_tis_per_dag=1,
    ).expand_kwargs(validate_range())


fraud_backfill()
