"""Run this checkout's DAGs on a local Airflow through its CLI, for the demo and the tests.

Only subprocesses: the library still never imports Airflow. The configuration here is the
laptop's; production sets the same `AIRFLOW__*` variables in docker-compose.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from mlpipeline.config import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

POOL = ("warehouse", "1", "DuckDB warehouse file: one opener at a time")


def airflow_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `airflow` commands: this checkout's DAGs and plugins, a SQLite DB."""
    env = dict(os.environ)
    home = settings.data_dir / "airflow"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_ENABLE_TELEMETRY": "false",
            "MLPIPELINE_DATA_DIR": str(settings.data_dir),
            "DUCKDB_PATH": str(settings.duckdb_path),
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        }
    )
    env.update(extra or {})
    return env


def _airflow() -> str:
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def run(args: list[str], env: dict[str, str], *, check: bool = True) -> int:
    log.info("$ airflow %s", " ".join(args))
    result = subprocess.run([_airflow(), *args], env=env, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {result.returncode}")
    return result.returncode


def init(env: dict[str, str]) -> None:
    """Create the metadata DB and the single-slot `warehouse` pool, and parse the dbt manifest
    the nightly's dbt tasks are rendered from (setup's job, not DAG code)."""
    from mlpipeline import transform

    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    transform.ensure_manifest()
    run(["db", "migrate"], env)
    run(["pools", "set", *POOL], env)


def dags_test(dag_id: str, day: date, env: dict[str, str]) -> int:
    """`airflow dags test` for the run of day D; returns the exit code (non-zero: run failed)."""
    return run(["dags", "test", dag_id, day.isoformat()], env, check=False)


def _json(args: list[str], env: dict[str, str]) -> list[dict]:
    out = subprocess.run(
        [_airflow(), *args, "-o", "json"], env=env, capture_output=True, text=True, check=True
    )
    # The CLI may print warnings first; the JSON document is the last line.
    return json.loads(out.stdout.strip().splitlines()[-1])


def task_states(dag_id: str, day: date, env: dict[str, str]) -> dict[str, str]:
    """task id (with map index when mapped) → state, for the newest run of day D."""
    runs = [
        r
        for r in _json(["dags", "list-runs", dag_id], env)
        if r["logical_date"].startswith(day.isoformat())
    ]
    if not runs:
        raise LookupError(f"no {dag_id} run for {day}")
    run_id = max(runs, key=lambda r: r["run_after"])["run_id"]
    states: dict[str, str] = {}
    for ti in _json(["tasks", "states-for-dag-run", dag_id, run_id], env):
        mapped = str(ti.get("map_index", "")) not in {"", "-1"}
        key = f"{ti['task_id']}[{ti['map_index']}]" if mapped else ti["task_id"]
        states[key] = ti["state"]
    return states
