"""
### example_scores_consumer — runs when the scores of a day are ready (an example to copy)

**This DAG is an example** for a downstream team: copy it, keep the schedule, replace the task.

It is scheduled on the asset **`fraud.scores`** (`mlpipeline_airflow.pipeline_assets`),
not on a clock:
each successful `score` task of `fraud_nightly` emits an event whose `extra` names the day
(`day`), the Delta table version its commit created (`table_version`), `rows_scored`,
`model_version` and `no_model_yet`. The task reads those events from
`triggering_asset_events`, reads each day's scores at that exact version through
`mlpipeline.scoring.scores_consumer.summarize` (the Delta table in the object store, never the
warehouse) and logs rows, flagged rows (at the model version's stored threshold) and the top
score. One run may carry several events (nights that finished while it waited): it handles each.

Like every DAG of this project it is created **paused** (`DAGS_ARE_PAUSED_AT_CREATION`):
unpause it to receive events. A manual run (`airflow dags test example_scores_consumer D`, or a
trigger with the `day` param) has no event and summarises day D's current scores.
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task
from mlpipeline_airflow.pipeline_assets import SCORES
from mlpipeline_airflow.processing_day import processing_day

from mlpipeline.core.config import Settings
from mlpipeline.scoring import scores_consumer

log = logging.getLogger(__name__)


@dag(
    dag_id="example_scores_consumer",
    schedule=SCORES,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "downstream-example"},
    doc_md=__doc__,
    tags=["fraud", "example"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Manual runs only: the day to summarise (YYYY-MM-DD).",
        ),
    },
)
def example_scores_consumer() -> None:
    @task
    def summarize_scores() -> list[dict]:
        context = get_current_context()
        events = [dict(e.extra) for e in context["triggering_asset_events"].get(SCORES, [])]
        if not events:
            events = [{"day": processing_day(context).isoformat()}]
        settings = Settings.from_env()
        summaries = [scores_consumer.summarize(settings, event) for event in events]
        for summary in summaries:
            log.info("%s", scores_consumer.describe(summary))
        return summaries

    summarize_scores()


example_scores_consumer()
