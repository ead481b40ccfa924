"""The scheduled nightly on the stack's two Celery workers with the `warehouse` pool setup gives a
PostgreSQL catalog (16 slots: warehouse tasks run side by side) against the same night with one
slot (every warehouse task in turn, what the DuckDB-file warehouse needed), measured in the same
run.

Each variant gets its own stack, started as the stack test starts it (tests/stack_compose.py runs
docker-compose.yml's services as processes: PostgreSQL catalog, data files in an S3 server, two
workers sharing no folder): the same generated history caught up to D-1, the pool set, then
fraud_nightly unpaused and last night's scheduled run (training on) timed from the unpause to its
success. Two cores serve both workers, so this is a figure, not a target: the target of 1 only
says the pool's slots must not make the night slower.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import Result
from mlpipeline.devtools import local_airflow
from tests.stack_compose import Machine, Stack
from tests.stack_driver import DAG, RUN_TIMEOUT_S, Api, dotenv, one_off, run_of, start_services

NIGHT = datetime.now(UTC).date() - timedelta(days=1)
START = NIGHT - timedelta(days=45)
CUSTOMERS = 300
log = logging.getLogger(__name__)


def _night(workdir: Path, slots: int) -> float:
    """Seconds from unpausing fraud_nightly to last night's run succeeding, with `slots`."""
    workdir.mkdir(parents=True)
    machine = Machine(workdir)
    stack = Stack(machine, dotenv(machine))
    try:
        start_services(stack)
        env = stack.container_env("scoring-api")
        api = Api(stack.machine.url("airflow-apiserver"), env["AIRFLOW_API_USERNAME"],
                  env["AIRFLOW_API_PASSWORD"])  # fmt: skip
        days = ["--start", START.isoformat(), "--end"]
        generate = ["mlpipeline", "generate", *days, NIGHT.isoformat()]
        one_off(stack, [*generate, "--customers", str(CUSTOMERS)], "one-off-generate")
        catchup = ["mlpipeline", "catchup", *days, (NIGHT - timedelta(days=1)).isoformat()]
        one_off(stack, catchup, "one-off-catchup")
        name, _, description = local_airflow.pool(
            stack.container_env("airflow-init")["WAREHOUSE_CATALOG"]
        )
        one_off(stack, ["airflow", "pools", "set", name, str(slots), description], "one-off-pool")
        stack.wait_until("fraud_nightly parsed", lambda: api.get(f"dags/{DAG}")["is_paused"], 240)
        began = time.monotonic()
        api.patch(f"dags/{DAG}", {"is_paused": False})
        stack.wait_until("last night's run", lambda: bool(run_of(api, NIGHT)), timeout=120)
        state = api.wait_for_run(run_of(api, NIGHT)["dag_run_id"], RUN_TIMEOUT_S, stack)
        seconds = time.monotonic() - began
        if state != "success":
            raise RuntimeError(f"the night with {slots} slot(s) ended {state}: {stack.log_dir}")
        log.warning("stack nightly with %d warehouse slot(s): %.0f s", slots, seconds)
        return seconds
    finally:
        stack.stop()


def run(workdir: Path) -> list[Result]:
    one_slot = _night(workdir / "one-slot", 1)
    slots = local_airflow.POOL_SLOTS["postgres"]
    many = _night(workdir / f"{slots}-slots", slots)
    return [
        Result.at_most(f"two_worker_nightly_{slots}_slots_vs_1", many, "s", one_slot, target=1.0)
    ]
