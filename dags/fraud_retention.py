"""
### fraud_retention — daily cleanup of old artifacts (Airflow DAG)

Runs every day at 05:00 UTC, after the nightly's usual run. One task per kind; each deletes
what is older than its age in `mlpipeline/conf/pipeline.yaml` (`retention.days`) and is not in
use, and logs a report of what it kept (and why) and what it deleted. The `dry_run` param
reports the plan and deletes nothing.

Never deleted, whatever their age:
- **raw_revisions** — the current revision of every batch, quarantined revisions (awaiting
  release or discard), and revisions not promoted yet with no newer current one. Superseded,
  discarded and never-promoted revisions lose their rows and files; `meta.batches` keeps them
  as `purged`. Runs in the `warehouse` pool.
- **exports** — the online snapshot's current, previous (rollback target) and pinned exports,
  and the exports requests of the request log not replayed yet were served from; within the
  age, the newest export of each cutoff.
- **request_log** — the online service's logged requests of a day not replayed by monitoring
  yet (logged with the command that replays it); replayed days within the age.
- **splits** — the splits of the champion's, challenger's, pinned and rollback-target model
  versions, and splits a run used within the age.
- **score_versions** — the score table's current version and every version within the age
  (Delta VACUUM of the files only older versions referenced).
- **data_docs** — the newest validation result of each suite and subject; the index is rebuilt.
- **mlflow_runs** — runs backing an aliased, pinned or rollback-target model version and the
  newest run of each candidate (soft delete; `mlflow gc` removes them for good).
- **redis_snapshots** — the current, previous and pinned snapshots; staged ones within the age.
- **warehouse_snapshots** — the warehouse's current DuckLake snapshot and every snapshot a
  registered model version was trained from (time travel rebuilds its training set); files only
  expired snapshots held are deleted, then small files merged. Runs in the `warehouse` pool.

The tasks are independent: one failing does not stop the others. Re-running is safe.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task
from mlpipeline_airflow.warehouse_access import WAREHOUSE

from mlpipeline.ops import retention


@dag(
    dag_id="fraud_retention",
    schedule="0 5 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-platform"},
    doc_md=__doc__,
    tags=["fraud", "maintenance"],
    params={
        "dry_run": Param(False, type="boolean", description="Report the plan; delete nothing."),
    },
)
def fraud_retention() -> None:
    @task
    def clean(kind: str) -> dict:
        dry_run = bool(get_current_context()["params"]["dry_run"])
        return retention.run(kind, dry_run=dry_run).to_dict()

    for kind in retention.KINDS:
        pool = {"pool": WAREHOUSE} if kind in retention.WAREHOUSE_KINDS else {}
        clean.override(task_id=f"clean_{kind}", **pool)(kind)


fraud_retention()
