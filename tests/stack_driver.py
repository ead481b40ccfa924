"""Driving the compose stack as its users do: a .env from .env.example with fresh secrets, the
services started in the compose file's order, one-off containers of the worker service, and
Airflow's REST API. The stack test and the two-worker nightly benchmark both use it.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

from mlpipeline.ops.airflow_api import AirflowApi, fetch_token
from tests.stack_compose import ROOT, Machine, Stack

log = logging.getLogger(__name__)

DAG = "fraud_nightly"
BACKFILL = "fraud_backfill"
WORKERS = ("airflow-worker-1", "airflow-worker-2")
RUN_TIMEOUT_S = 12 * 60
SECRETS = (
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "POSTGRES_PASSWORD",
    "REDIS_FEATURES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "WAREHOUSE_READER_PASSWORD",
    "MINIO_READER_PASSWORD",
)


def dotenv(machine: Machine) -> dict[str, str]:
    """.env.example with a fresh value for each secret and the URLs users reach here."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    values.update({key: secrets.token_urlsafe(18).replace("-", "_") for key in SECRETS})
    values["AIRFLOW_BASE_URL"] = machine.url("airflow-apiserver")
    values["MLFLOW_UI_URL"] = machine.url("mlflow")
    values["AIRFLOW_WORKER_CONCURRENCY"] = "2"
    # The backfill test waits for a retry: seconds, not the deployment's minutes.
    values["AIRFLOW_TASK_RETRY_DELAY_SECONDS"] = "20"
    return values


class Api(AirflowApi):
    """Airflow's REST API, logged in with the .env account."""

    def __init__(self, url: str, user: str, password: str) -> None:
        super().__init__(url, fetch_token(url, user, password))

    def get(self, path: str) -> Any:  # noqa: ANN401 - JSON
        return self.call("GET", path)

    def patch(self, path: str, body: Any) -> Any:  # noqa: ANN401
        return self.call("PATCH", path, body)

    def post(self, path: str, body: Any) -> Any:  # noqa: ANN401
        return self.call("POST", path, body)

    def runs(self, dag: str = DAG) -> list[dict]:
        return self.call("GET", f"dags/{dag}/dagRuns", limit=50)["dag_runs"]

    def wait_for_end(self, run_id: str, timeout: float, dag: str = DAG) -> str:
        """The run's final state, whatever its tasks went through."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get(self.run_path(dag, run_id))["state"]
            if state in {"success", "failed"}:
                return state
            time.sleep(5)
        raise AssertionError(f"{dag} run {run_id} still {state} after {timeout:.0f}s")

    def wait_for_run(self, run_id: str, timeout: float, stack: Stack) -> str:
        """The run's final state; a task that failed an attempt on this clean night ends the
        wait at once (the stack retries tasks minutes later), naming it and its log."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = self.get(self.run_path(DAG, run_id))["state"]
            if state in {"success", "failed"}:
                return state
            retrying = [
                ti["task_id"]
                for ti in self.task_instances(DAG, run_id)
                if ti["state"] in {"up_for_retry", "failed"}
            ]
            assert not retrying, (
                f"{retrying} failed on a clean night:\n"
                + task_log(stack, run_id, retrying[0])[-3000:]
            )
            stack.wait_until("the services", lambda: True, timeout=1)
            time.sleep(5)
        raise AssertionError(f"run {run_id} still {state} after {timeout:.0f}s")


def task_log(stack: Stack, run_id: str, task_id: str) -> str:
    """The task's log (every attempt) as the workers wrote it on the shared logs volume."""
    logs = stack.machine.volume("airflow-logs")
    found = [p for p in logs.rglob("*.log") if run_id in str(p) and f"task_id={task_id}/" in str(p)]
    return "\n".join(p.read_text(errors="replace") for p in sorted(found))


def one_off(stack: Stack, argv: list[str], container: str) -> None:
    """`docker compose run --rm airflow-worker ARGV`: the worker's environment and volumes."""
    env = stack.container_env("airflow-worker", container)
    began = time.monotonic()
    result = subprocess.run(
        [str(Path(stack.command("airflow-worker")[0]).parent / argv[0]), *argv[1:]],
        env=env,
        cwd=stack.machine.image,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log.info("stack: %s took %.0fs", " ".join(argv), time.monotonic() - began)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def start_services(stack: Stack) -> None:
    """The compose file's services in its dependency order, waiting where it waits."""
    stack.start_postgres()
    stack.start_redis("redis-celery")
    stack.start_redis("redis-features")
    stack.start_s3()
    stack.start("mlflow")
    stack.run_once("airflow-init")
    stack.start("airflow-apiserver")
    stack.wait_until("mlflow", lambda: stack.healthy("mlflow"), timeout=240)
    stack.wait_until("airflow-apiserver", lambda: stack.healthy("airflow-apiserver"), timeout=240)
    for service in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        stack.start(service)
    for worker in WORKERS:
        stack.start("airflow-worker", container=worker)
    stack.start("scoring-api")


def run_of(api: Api, day: date) -> dict | None:
    for run in api.runs():
        if run["run_type"] == "scheduled" and run["data_interval_start"].startswith(
            day.isoformat()
        ):
            return run
    return None
