"""Read back what local Airflow runs recorded: a `dags test` run's printed task logs, and the
asset events in the metadata DB (through Airflow's own models, in a subprocess with the run's
environment; the CLI has no command listing asset events)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from mlpipeline.devtools.local_airflow import airflow_executable

EVENTS = r"""
import json
from sqlalchemy import select
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session

with create_session() as session:
    rows = session.execute(
        select(
            AssetModel.name, AssetEvent.extra, AssetEvent.source_dag_id,
            AssetEvent.source_task_id, AssetEvent.source_run_id,
        )
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .order_by(AssetEvent.timestamp)
    ).all()
keys = ("asset", "extra", "dag_id", "task_id", "run_id")
print(json.dumps([dict(zip(keys, row)) for row in rows]))
"""


def dags_test(dag_id: str, day: date, env: dict[str, str]) -> tuple[int, str]:
    """`airflow dags test` for day D, keeping what it printed: the task logs, in a test run."""
    done = subprocess.run(
        [airflow_executable(), "dags", "test", dag_id, day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def asset_events(env: dict[str, str]) -> list[dict]:
    """Every asset event, oldest first: asset name, extra, and the task and run that emitted it."""
    return run_probe(EVENTS, env)


def run_probe(script: str, env: dict[str, str], *args: str | Path) -> Any:  # noqa: ANN401
    """Run a probe script (Python source; `args` are its sys.argv, e.g. a DagBag folder) with
    this interpreter in `env`, in a process of its own as Airflow would parse; the probe prints
    its findings as JSON on its last line."""
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
