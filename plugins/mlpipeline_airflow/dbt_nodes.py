"""What the nightly's dbt tasks (rendered by Cosmos) do before dbt runs: what dbt itself does
not check, in the task's own log."""

from __future__ import annotations

from typing import Any

from mlpipeline_airflow.warehouse_access import require_warehouse


def before_dbt_node(context: Any) -> None:  # noqa: ANN401 - Airflow's task context
    """pre_execute of every dbt task: fail when the warehouse is not where it should be, and warn
    when the DAG was rendered from a manifest older than the dbt code (the check a DAG parse no
    longer makes)."""
    from mlpipeline.features import transform

    require_warehouse(context)
    transform.warn_if_manifest_stale()
