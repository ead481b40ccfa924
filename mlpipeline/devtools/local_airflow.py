"""Run this checkout's DAGs on a local Airflow through its CLI (and, once its services run,
their REST API), for the demo and the tests.

Only subprocesses and HTTP: the library still never imports Airflow. The configuration here is the
laptop's; production sets the same `AIRFLOW__*` variables in docker-compose.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.ops.airflow_api import AirflowApi

log = logging.getLogger(__name__)

POOL_NAME = "warehouse"
# Warehouse task slots by catalog kind. A SQLite catalog refuses a reader while a writer commits
# ("database is locked"), so its tasks take turns; a PostgreSQL catalog serves them all at once,
# a conflicting commit running its unit again.
POOL_SLOTS = {"sqlite": 1, "postgres": 16}
# Where SimpleAuthManager keeps the passwords of its users (only `admin` here).
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
USER = "admin"


def airflow_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `airflow` commands: this checkout's DAGs and plugins, a SQLite DB."""
    env = dict(os.environ)
    home = settings.data_dir / "airflow"
    env.update(
        {
            # Airflow starts its own components as `airflow ...` (standalone does): this
            # environment's command first, whether or not the venv is activated.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # A laptop's UI and API answer this machine only.
            "AIRFLOW__API__HOST": "127.0.0.1",
            # The LocalExecutor's workers come from a fork server that imported the tasks'
            # libraries once (mlpipeline_airflow.task_preload), so a task process does not.
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            # skops.io first, while Airflow's modules are not loaded (see task_preload); the
            # plugins folder, task_preload's, is on the path once Airflow is imported.
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": (
                "skops.io,airflow.executors.local_executor,mlpipeline_airflow.task_preload"
            ),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_ENABLE_TELEMETRY": "false",
            "MLPIPELINE_DATA_DIR": str(settings.data_dir),
            "WAREHOUSE_CATALOG": settings.warehouse_catalog,
            "WAREHOUSE_DATA_PATH": settings.warehouse_data_path,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        }
    )
    env.update(extra or {})
    return env


def airflow_executable() -> str:
    """This environment's `airflow` command (beside the running interpreter when it is there)."""
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def run(args: list[str], env: dict[str, str], *, check: bool = True) -> int:
    log.info("$ airflow %s", " ".join(args))
    result = subprocess.run([airflow_executable(), *args], env=env, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {result.returncode}")
    return result.returncode


def init(env: dict[str, str]) -> None:
    """Create the warehouse, the metadata DB and the `warehouse` pool (sized for the catalog),
    and parse the dbt manifest the nightly's dbt tasks are rendered from (setup's job, not DAG
    code)."""
    from mlpipeline import warehouse
    from mlpipeline.features import transform

    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    password_file(env)
    warehouse.create(
        Settings.from_env().model_copy(
            update={
                "warehouse_catalog": env["WAREHOUSE_CATALOG"],
                "warehouse_data_path": env["WAREHOUSE_DATA_PATH"],
            }
        )
    )
    transform.ensure_manifest()
    run(["db", "migrate"], env)
    run(["pools", "set", *pool(env["WAREHOUSE_CATALOG"])], env)


def pool(catalog: str) -> list[str]:
    """`airflow pools set` arguments of the `warehouse` pool for a WAREHOUSE_CATALOG."""
    kind = catalog.partition(":")[0]
    slots = POOL_SLOTS.get(kind, 1)
    at_once = "one task at a time" if slots == 1 else f"up to {slots} tasks at once"
    return [POOL_NAME, str(slots), f"DuckLake warehouse, {kind} catalog: {at_once}"]


def password_file(env: dict[str, str]) -> Path:
    """SimpleAuthManager writes the generated admin password into an existing file as it is,
    so the file is made readable by its owner only before Airflow first writes to it."""
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    path = Path(configured or Path(env["AIRFLOW_HOME"]) / PASSWORDS_FILE)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return path


def admin_password(env: dict[str, str]) -> str:
    """The local `admin` password, written on first use where SimpleAuthManager reads it (it
    keeps a password it finds): the tasks that call the REST API log in with it."""
    path = password_file(env)
    passwords = json.loads(path.read_text() or "{}")
    if USER not in passwords:
        passwords[USER] = secrets.token_urlsafe(12)
        path.write_text(json.dumps(passwords))
    return passwords[USER]


def set_connection(conn_id: str, fields: dict, env: dict[str, str]) -> None:
    """Create or replace an Airflow connection (`airflow connections add` refuses an existing
    id, so the old one is deleted first): setup can run again with changed settings."""
    subprocess.run(
        [airflow_executable(), "connections", "delete", conn_id],
        env=env,
        capture_output=True,
        check=False,
    )
    # Not through `run`: its log line would show the password.
    log.info("$ airflow connections add %s --conn-json <%s fields>", conn_id, len(fields))
    added = subprocess.run(
        [airflow_executable(), "connections", "add", conn_id, "--conn-json", json.dumps(fields)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        raise RuntimeError(f"`airflow connections add {conn_id}` failed: {added.stderr[-2000:]}")


def dags_test(
    dag_id: str,
    day: date,
    env: dict[str, str],
    conf: dict[str, Any] | None = None,
    *,
    mark_success: str | None = None,
) -> int:
    """`airflow dags test` for the run of day D (with the run's `conf`, its params); task ids
    fully matching the regex `mark_success` are marked successful instead of run. Returns the
    exit code (non-zero: run failed)."""
    options = ["--conf", json.dumps(conf)] if conf else []
    if mark_success:
        options += ["--mark-success-pattern", mark_success]
    return run(["dags", "test", *options, dag_id, day.isoformat()], env, check=False)


def cli_json(args: list[str], env: dict[str, str]) -> list[dict]:
    """What an `airflow` command prints with `-o json`."""
    out = subprocess.run(
        [airflow_executable(), *args, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # The CLI may print warnings first; the JSON document is the last line.
    return json.loads(out.stdout.strip().splitlines()[-1])


def task_instances(
    dag_id: str, day: date, env: dict[str, str], run_id: str | None = None
) -> list[dict]:
    """The task instances of run `run_id`, else of the newest run of day D, as `airflow tasks
    states-for-dag-run` shows them (task_id, map_index, state, start_date, end_date)."""
    if run_id is None:
        runs = [
            r
            for r in cli_json(["dags", "list-runs", dag_id], env)
            if r["logical_date"].startswith(day.isoformat())
        ]
        if not runs:
            raise LookupError(f"no {dag_id} run for {day}")
        run_id = max(runs, key=lambda r: r["run_after"])["run_id"]
    return cli_json(["tasks", "states-for-dag-run", dag_id, run_id], env)


def task_states(dag_id: str, day: date, env: dict[str, str]) -> dict[str, str]:
    """task id (with map index when mapped) → state, for the newest run of day D."""
    states: dict[str, str] = {}
    for ti in task_instances(dag_id, day, env):
        mapped = str(ti.get("map_index", "")) not in {"", "-1"}
        key = f"{ti['task_id']}[{ti['map_index']}]" if mapped else ti["task_id"]
        states[key] = ti["state"]
    return states


# --- the long-running services (API server + UI, scheduler, DAG processor, triggerer) ---------

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class Services:
    """Local Airflow services started by `start_services`; `stop()` ends them and their children."""

    url: str
    processes: dict[str, subprocess.Popen]
    log_dir: Path
    env: dict[str, str]

    def stop(self, timeout: float = 30) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may outlive its leader (task processes, API workers): kill what is left.
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def services_env(env: dict[str, str], port: int) -> dict[str, str]:
    """`env` plus what the services need to find each other: the API server's port and URL
    (also the Execution API the task processes report to), one JWT secret for all of them, and
    the REST API's address and account for the tasks that call it (fraud_backfill).
    The executor is the caller's choice (LocalExecutor runs tasks on this machine, with SQLite)."""
    url = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        **env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW_API_URL": url,
        "AIRFLOW_API_USERNAME": USER,
        "AIRFLOW_API_PASSWORD": admin_password(env),
    }


def start_services(env: dict[str, str], log_dir: Path, *, timeout: float = 180) -> Services:
    """Start the API server, the scheduler and the DAG processor (each in its own process group,
    logging to `log_dir`) and wait until the API server answers. `env` from `services_env`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    services = Services(env["AIRFLOW__API__BASE_URL"], processes, log_dir, env)
    try:
        for name in SERVICES:
            with (log_dir / f"{name}.log").open("ab") as log_file:
                processes[name] = subprocess.Popen(
                    [airflow_executable(), name],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        _wait_healthy(services, timeout)
    except BaseException:
        services.stop()
        raise
    return services


def _wait_healthy(services: Services, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        for name, process in services.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"`airflow {name}` exited with code {process.returncode}; see "
                    f"{services.log_dir / (name + '.log')}"
                )
        try:
            with urllib.request.urlopen(f"{services.url}/api/v2/monitor/health", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Airflow API server did not answer at {services.url} within "
                    f"{timeout:.0f}s; see {services.log_dir / 'api-server.log'}"
                ) from None
            time.sleep(1)


def api(env: dict[str, str]) -> AirflowApi:
    """The REST API of the services `env` describes (`services_env`), as their admin. Waiting on
    the services goes through it rather than the CLI: an `airflow` command costs seconds of CPU,
    taken from the tasks it watches on a small machine."""
    return AirflowApi.login(
        env["AIRFLOW_API_URL"], token=None, username=USER, password=env["AIRFLOW_API_PASSWORD"]
    )


def wait_for_dags(client: AirflowApi, dag_ids: set[str], timeout: float = 180) -> dict[str, bool]:
    """dag id → paused, once the DAG processor has stored `dag_ids` (a trigger needs them)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.call("GET", "dags", limit=100)["dags"]
        dags = {d["dag_id"]: bool(d["is_paused"]) for d in listed}
        if dag_ids <= set(dags):
            return dags
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the DAG processor did not store {sorted(dag_ids - set(dags))} within "
                f"{timeout:.0f}s; see its log and `mlpipeline airflow dags list-import-errors`"
            )
        time.sleep(2)


def run_once(
    services: Services, dag_id: str, day: date, *, scheduled: bool, timeout: float = 3600
) -> tuple[str, str]:
    """One run of `dag_id` for day D through the running scheduler, like a night in production:
    real start time and duration, task logs where the UI reads them. With `scheduled` (D is the
    day that ended last and the scheduler schedules), unpausing lets the scheduler create the
    DAG's own run for D, so a later unpause does not run D again; otherwise (or when D already
    has its scheduled run) a manual run with D in its conf. The DAG is paused again after the
    run (local DAGs stay paused until the user decides). Returns (run id, final state); logs
    progress while it waits."""
    client = api(services.env)
    paused = wait_for_dags(client, {dag_id})[dag_id]
    scheduled = scheduled and _scheduled_run(client, dag_id, day) is None
    if paused:
        _set_paused(client, dag_id, False)
    try:
        if scheduled:
            run_id = _wait_for_scheduled_run(client, dag_id, day)
        else:
            run_id = f"manual__{day.isoformat()}__{secrets.token_hex(4)}"
            body = {"dag_run_id": run_id, "logical_date": None, "conf": {"day": str(day)}}
            client.call("POST", f"dags/{dag_id}/dagRuns", body)
        return run_id, _wait_for_run(client, dag_id, run_id, timeout)
    finally:
        if paused:
            _set_paused(client, dag_id, True)


def _set_paused(client: AirflowApi, dag_id: str, paused: bool) -> None:
    client.call("PATCH", f"dags/{dag_id}", {"is_paused": paused}, update_mask="is_paused")


def _scheduled_run(client: AirflowApi, dag_id: str, day: date) -> str | None:
    """The run id of D's scheduled run, if the scheduler has created it."""
    runs = client.call(
        "GET",
        f"dags/{dag_id}/dagRuns",
        run_type="scheduled",
        logical_date_gte=f"{day}T00:00:00Z",
        logical_date_lte=f"{day}T23:59:59Z",
    )["dag_runs"]
    return runs[0]["dag_run_id"] if runs else None


def _wait_for_scheduled_run(client: AirflowApi, dag_id: str, day: date) -> str:
    deadline = time.monotonic() + 180
    while (run_id := _scheduled_run(client, dag_id, day)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the scheduler created no run of {dag_id} for {day} within 180s after "
                "unpausing it; see the scheduler's log"
            )
        time.sleep(5)
    log.info("%s: the scheduler created %s for %s", dag_id, run_id, day)
    return run_id


def _wait_for_run(client: AirflowApi, dag_id: str, run_id: str, timeout: float) -> str:
    runs = client.run_path(dag_id, run_id)
    began, state = time.monotonic(), "queued"
    while state not in {"success", "failed"}:
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
        time.sleep(10)
        states = [ti["state"] for ti in client.task_instances(dag_id, run_id)]
        done = sum(s in {"success", "failed", "skipped", "upstream_failed"} for s in states)
        state = client.call("GET", runs)["state"]
        log.info(
            "%s %s: %s, %d/%d tasks done (%d failed), %.0fs",
            dag_id,
            run_id,
            state,
            done,
            len(states),
            states.count("failed"),
            time.monotonic() - began,
        )
    return state
