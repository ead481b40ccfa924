"""Which airflow tasks may open the warehouse: those in the `warehouse` pool, and no others.

The pool is how a task declares the warehouse (and how many such tasks run at once). A
listener tells the library, in each task's own process and before the task runs, whether the
task declared it (`mlpipeline.warehouse.ACCESS_VAR`); `warehouse.connect` then refuses an
undeclared opener, so a task that forgot the pool fails on its first run. dbt attaches the
warehouse itself: its tasks run `require_warehouse` first, so a worker pointed at the wrong
catalog fails instead of letting dbt create an empty warehouse there.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from mlpipeline import warehouse

WAREHOUSE = "warehouse"


def access_of(task_id: str, dag_id: str, pool: str | None) -> str:
    """The value of ACCESS_VAR for a task: declared, or the task's name for the error."""
    return warehouse.DECLARED if pool == WAREHOUSE else f"{dag_id}.{task_id} (pool {pool!r})"


class TaskDeclarations:
    """Sets ACCESS_VAR for the task about to run, in the task's process."""

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:  # noqa: ANN401
        pool = getattr(task_instance.task, "pool", None)
        os.environ[warehouse.ACCESS_VAR] = access_of(
            task_instance.task_id, task_instance.dag_id, pool
        )


def require_warehouse(context: Any) -> None:  # noqa: ANN401 - Airflow's task context
    """pre_execute of tasks whose tool opens the warehouse by itself (dbt)."""
    warehouse.require()


class WarehouseAccessPlugin(AirflowPlugin):
    name = "warehouse_access"
    listeners = [TaskDeclarations()]
