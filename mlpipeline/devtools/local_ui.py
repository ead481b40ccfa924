"""`mlpipeline ui` (`make ui`): every UI of a local checkout in one command.

Starts the Airflow API server (the UI), scheduler, DAG processor and triggerer with the
LocalExecutor, and the MLflow UI on the pipeline's own tracking store, with the settings that
make the UI's extra links work (`MLFLOW_UI_URL` pointing at that MLflow). Prints where to go,
who to log in as and where the password is kept, and which DAGs are paused and what unpausing
them does: every DAG is created paused, and a paused one never runs, silently. Runs until
Ctrl-C, then stops everything it started. No activated virtualenv is needed: every command is
this environment's own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlpipeline.core.config import Settings
from mlpipeline.devtools import local_airflow

log = logging.getLogger(__name__)


# What unpausing each DAG does, for the banner (local_airflow creates every DAG paused).
UNPAUSE_EFFECT = {
    "fraud_nightly": "runs every night for the day that just ended (and at once for last night "
    "if it has not run); fraud_backfill's runs need it unpaused",
    "fraud_backfill": "lets a triggered backfill start; a trigger while paused waits queued",
    "fraud_retention": "deletes what the retention rules allow, every day at 05:00 UTC",
    "example_scores_consumer": "runs each time fraud_nightly publishes scores",
}


@dataclass
class Ui:
    """What `start` started; `stop()` ends it all."""

    airflow_url: str
    mlflow_url: str | None
    password_file: Path
    services: local_airflow.Services
    mlflow: subprocess.Popen | None

    def stop(self) -> None:
        self.services.stop()
        if self.mlflow is not None:
            try:
                os.killpg(self.mlflow.pid, signal.SIGTERM)
                self.mlflow.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.mlflow.pid, signal.SIGKILL)


def _mlflow_server(settings: Settings, port: int, log_dir: Path) -> subprocess.Popen | None:
    """The MLflow UI on the pipeline's SQLite tracking store (None when the store is a server
    already: its own UI is the one to open)."""
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:"):
        return None
    with (log_dir / "mlflow.log").open("ab") as log_file:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(url: str, process: subprocess.Popen, log_file: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url} did not start (exit {process.returncode}); see {log_file}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{url} did not answer within {timeout:.0f}s; see {log_file}"
                ) from None
            time.sleep(1)


def start(settings: Settings, *, airflow_port: int = 8080, mlflow_port: int = 5000) -> Ui:
    """Start MLflow's UI and Airflow's services for this checkout, set up on first use."""
    from mlpipeline.devtools.localredis import resolve_url

    log_dir = settings.data_dir / "logs" / "ui"
    log_dir.mkdir(parents=True, exist_ok=True)
    mlflow = _mlflow_server(settings, mlflow_port, log_dir)
    mlflow_url = f"http://127.0.0.1:{mlflow_port}" if mlflow else settings.mlflow_ui_url or None
    env = local_airflow.airflow_env(
        settings,
        {
            "REDIS_URL": resolve_url(settings),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            **({"MLFLOW_UI_URL": mlflow_url} if mlflow_url else {}),
        },
    )
    try:
        if not (settings.data_dir / "airflow" / "airflow.db").exists():
            local_airflow.init(env)
        if mlflow is not None:
            _wait_for(f"{mlflow_url}/health", mlflow, log_dir / "mlflow.log")
        env = local_airflow.services_env(env, airflow_port)
        services = local_airflow.start_services(env, log_dir)
    except BaseException:
        if mlflow is not None:
            os.killpg(mlflow.pid, signal.SIGKILL)
        raise
    password_file = local_airflow.password_file(env)
    return Ui(services.url, mlflow_url, password_file, services, mlflow)


def banner(ui: Ui, paused: dict[str, bool]) -> str:
    password = json.loads(ui.password_file.read_text() or "{}").get(
        local_airflow.USER, "(see the file)"
    )
    lines = [
        "",
        f"Airflow UI:  {ui.airflow_url}    user {local_airflow.USER}, password {password}",
        f"             (kept in {ui.password_file}; the same on every start)",
        f"MLflow UI:   {ui.mlflow_url or '(set MLFLOW_UI_URL to link it)'}",
        f"Logs of the services: {ui.services.log_dir}",
        "",
    ]
    for dag_id, is_paused in sorted(paused.items()):
        effect = UNPAUSE_EFFECT.get(dag_id, "")
        state = "PAUSED  " if is_paused else "unpaused"
        lines.append(
            f"  {state} {dag_id}: unpausing it {effect}" if is_paused else f"  {state} {dag_id}"
        )
    if any(paused.values()):
        lines.append(
            "  Unpause with the toggle on a DAG's page, or "
            "`mlpipeline airflow dags unpause DAG_ID`."
        )
    lines += ["", "Ctrl-C stops everything started here."]
    return "\n".join(lines)


def serve(settings: Settings, *, airflow_port: int = 8080, mlflow_port: int = 5000) -> None:
    """Start the UIs, print where they are, and keep them up until Ctrl-C or SIGTERM."""
    ui = start(settings, airflow_port=airflow_port, mlflow_port=mlflow_port)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        paused = local_airflow.wait_for_dags(
            local_airflow.api(ui.services.env), set(UNPAUSE_EFFECT)
        )
        print(banner(ui, paused), flush=True)
        while not stop:
            for name, process in ui.services.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"`airflow {name}` stopped (exit {process.returncode}); see "
                        f"{ui.services.log_dir / (name + '.log')}"
                    )
            time.sleep(1)
    finally:
        ui.stop()
