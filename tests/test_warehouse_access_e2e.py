"""In a real Airflow run, a task that opens the warehouse without declaring it (the `warehouse`
pool) fails, and a declared one succeeds: the listener of mlpipeline_airflow.warehouse_access
tells the library which task is running. A DAG with one of each, beside this checkout's plugins."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.devtools import local_airflow
from tests.airflow_probe import dags_test

pytestmark = pytest.mark.e2e

DAG = """
from datetime import datetime

from airflow.sdk import dag, task

from mlpipeline import warehouse


@dag(dag_id="warehouse_access", schedule=None, start_date=datetime(2026, 1, 1))
def warehouse_access():
    @task(pool="warehouse")
    def declared():
        with warehouse.connect(read_only=True) as con:
            return con.execute("SELECT 1").fetchone()[0]

    @task
    def forgotten():
        with warehouse.connect(read_only=True) as con:
            return con.execute("SELECT 1").fetchone()[0]

    declared() >> forgotten()


warehouse_access()
"""


def test_an_undeclared_opener_fails_at_run_time_and_a_declared_one_runs(tmp_path: Path) -> None:
    settings = Settings.under(tmp_path / "data")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "warehouse_access.py").write_text(DAG)
    env = local_airflow.airflow_env(settings, {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    local_airflow.init(env)
    warehouse.require(settings)  # setup (local_airflow.init) created the warehouse
    code, printed = dags_test("warehouse_access", date(2026, 1, 2), env)
    assert code != 0
    states = local_airflow.task_states("warehouse_access", date(2026, 1, 2), env)
    assert states == {"declared": "success", "forgotten": "failed"}
    assert warehouse.UndeclaredWarehouseAccess.__name__ in printed
    assert "warehouse_access.forgotten (pool 'default_pool')" in printed
