"""fraud_nightly cut down to `resolve_day` and its `dbt_build` group, the group rendered in the
Cosmos execution mode BENCH_DBT_DAG_MODE names (`local` or `watcher`, then flags joined by `_`,
e.g. `watcher_attached_unpooled_poke1`), run only when triggered. bench_dbt_dag runs it with the
scheduler, the LocalExecutor and a triggerer, like a night in production.

The DAG is dags/fraud_nightly.py itself, built with Cosmos' ExecutionConfig (and for the watcher
its RenderConfig) replaced: only the execution mode, where the tests run and how the consumers
wait differ, nothing of the nightly is copied. A watcher consumer whose node has not finished
defers to the triggerer, which reads the producer's XComs every `poke_interval` (Cosmos' default
10 s); it comes back to a worker to finish.
"""

from __future__ import annotations

import os
import runpy
from collections.abc import Callable

import cosmos
from airflow.sdk.definitions._internal.contextmanager import DagContext
from airflow.sdk.definitions.timetables.simple import NullTimetable
from cosmos.constants import ExecutionMode, SourceRenderingBehavior, TestBehavior

from mlpipeline.core.config import PROJECT_ROOT

# The mode, then flags: `unpooled`, the watcher's consumers outside the `warehouse` pool (they
# read the producer's XComs, not the warehouse), so they need not wait for the producer's slot;
# `attached`, the tests spanning several models kept with a model's tests instead of detached as
# tasks that run dbt themselves, so the producer's build is the only dbt run; `nosources`, no
# task per source, which also drops the producer's `dbt source freshness` before its build
# (Cosmos runs it whenever sources are rendered); `poke1`, consumers read the producer's XComs
# every second instead of every 10.
VARIANT = os.environ.get("BENCH_DBT_DAG_MODE", "local")
MODE_NAME, *FLAGS = VARIANT.split("_")
MODE = ExecutionMode(MODE_NAME)
RENDERED = {"ExecutionConfig": cosmos.ExecutionConfig, "RenderConfig": cosmos.RenderConfig}
CHANGES = {"ExecutionConfig": {"execution_mode": MODE}}
if MODE == ExecutionMode.WATCHER:
    # The watcher's producer runs the one `dbt build`: it has no per-model build task, so each
    # model's tests are a task of their own.
    CHANGES["RenderConfig"] = {
        "test_behavior": TestBehavior.AFTER_EACH,
        "should_detach_multiple_parents_tests": "attached" not in FLAGS,
    }
    if "nosources" in FLAGS:
        CHANGES["RenderConfig"]["source_rendering_behavior"] = SourceRenderingBehavior.NONE


def _changed(name: str) -> Callable[..., object]:
    return lambda **kwargs: RENDERED[name](**{**kwargs, **CHANGES.get(name, {})})


for _name in RENDERED:
    setattr(cosmos, _name, _changed(_name))
try:
    nightly = runpy.run_path(str(PROJECT_ROOT / "dags" / "fraud_nightly.py"))["fraud_nightly_dag"]
finally:
    for _name, _config in RENDERED.items():
        setattr(cosmos, _name, _config)

fraud_nightly_dbt = nightly.partial_subset(
    [
        t.task_id
        for t in nightly.tasks
        if t.task_id == "resolve_day" or t.task_id.startswith("dbt_build.")
    ],
    include_upstream=False,
)
fraud_nightly_dbt.fileloc = __file__
# Runs only when triggered for a day: the nightly's timetable would add a run of its own.
fraud_nightly_dbt.timetable = NullTimetable()
# Only the cut-down DAG is this file's: the whole nightly registered itself as it was built.
DagContext.autoregistered_dags -= {e for e in DagContext.autoregistered_dags if e[0] is nightly}
del nightly
# The group's first tasks waited for ingest, which waited for resolve_day (whose XCom is D).
_resolve_day = fraud_nightly_dbt.get_task("resolve_day")
for _task in fraud_nightly_dbt.tasks:
    if _task is not _resolve_day and not _task.upstream_task_ids:
        _resolve_day >> _task
    if "unpooled" in FLAGS and hasattr(_task, "producer_task_id"):
        # Outside the pool the project's guard (require_warehouse) refuses a task; a consumer
        # only opens the warehouse when it falls back to running its node itself.
        _task.pool = "default_pool"
        _task._pre_execute_hook = None
    if "poke1" in FLAGS and hasattr(_task, "producer_task_id"):
        _task.poke_interval = 1
