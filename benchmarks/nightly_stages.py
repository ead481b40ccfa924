"""What the benchmarks of whole nights share: the nightly's stages as library calls in one
process, each timed (bench_history, bench_nightly), the environment that points them at a
benchmark's folder and Redis, a copy of a prepared pipeline's state, and a run of a DAG by the
scheduler with the LocalExecutor (bench_dbt_dag, bench_nightly)."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

from mlpipeline.core.config import Settings
from mlpipeline.devtools import local_airflow
from mlpipeline.devtools.localredis import free_port
from mlpipeline.ingest import gates
from mlpipeline.pipeline import nightly
from mlpipeline.training import model_registry
from tests.lake_copy import relocate

log = logging.getLogger(__name__)

# Whatever would point the nightly's stages at another warehouse, store or tracking server.
OVERRIDES = (
    "WAREHOUSE_CATALOG",
    "WAREHOUSE_DATA_PATH",
    "DUCKDB_PATH",
    "MLPIPELINE_BUCKET",
    "AWS_ENDPOINT_URL",
    "AIRFLOW_API_URL",
)
# Folders of a data folder a copy leaves out: dbt's logs and compiled files name the folder they
# ran in (each copy's dbt makes its own), Airflow's home and services are per run.
NOT_COPIED = ("dbt", "airflow", "services")


@contextmanager
def pipeline_env(
    settings: Settings,
    redis_url: str,
    *,
    window: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[None]:
    """The stages read their settings from the environment (as a worker's task does): point it
    at the benchmark's folder and Redis for the run (plus `env`), and put it back afterwards.
    With `window`, the training-set gate is told that training window (it reads the window from
    dbt_project.yml; the builds then pass it as a dbt var)."""
    values = {
        "MLPIPELINE_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "REDIS_URL": redis_url,
        **(env or {}),
    }
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, values))
        if window is not None:
            stack.enter_context(
                mock.patch.object(gates, "training_window_days", return_value=window)
            )
        for var in OVERRIDES:
            os.environ.pop(var, None)
        yield


class Stages:
    """Runs stages one after another, timing each: `seconds` by stage name (a name used again
    adds up). An outcome the DAG records and goes on from (nothing to do, monitoring failed
    after publishing) is logged and returns None."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        started = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except (nightly.NothingToDo, nightly.MonitoringFailed) as outcome:
            log.warning("%s, %s: %s", self.label, name, outcome)
            out = None
        elapsed = time.perf_counter() - started
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        log.warning("%s, %s: %.1fs", self.label, name, elapsed)
        return out


def after_features(
    stage: Stages,
    settings: Settings,
    day: date,
    run_id: str,
    *,
    candidates: Sequence[str] | None = None,
    train: bool | None = True,
) -> None:
    """The stages after the dbt build of `day`, as the DAG calls them: snapshot gate,
    training-set gate, split, train (the `candidates` named, default all), evaluate and promote,
    export of the snapshot, scoring, push / verify / switch into Redis, monitoring. `train` is
    the DAG's param (None: the training cadence decides, as on a manual run). When no champion
    resolves after promotion (random labels may not pass the rules), the first trained version
    is made champion, untimed: scoring needs a model."""
    iso = day.isoformat()
    stage("check_snapshot", nightly.check_snapshot, iso, run_id)
    checked = stage("check_training_set", nightly.check_training_set, iso, run_id, train=train)
    if checked is not None:
        split_info = stage("split", nightly.split, iso, checked)
        jobs = [
            job
            for job in nightly.candidates(split_info)
            if candidates is None or job["candidate"] in candidates
        ]
        trained = [stage("train", nightly.train, job) for job in jobs]
        stage("evaluate_and_promote", nightly.evaluate_and_promote, iso, split_info, trained)
        if model_registry.resolve_champion(settings.mlflow_tracking_uri) is None:
            client = model_registry.client(settings.mlflow_tracking_uri)
            client.set_registered_model_alias(
                model_registry.MODEL_NAME, "champion", trained[0]["model_version"]
            )
    export = stage("export", nightly.export_snapshot, iso)
    stage("score", nightly.score, iso, run_id)
    stage("push", nightly.push_staged, export)
    verified = stage("verify", nightly.verify_staged, export)
    stage("switch", nightly.switch_online, export, verified)
    stage("monitor", nightly.monitor, iso, run_id)


def copy_state(prepared: Settings, data_dir: Path) -> Settings:
    """A private copy of a prepared data folder (warehouse, object store, MLflow store and its
    artifacts) in `data_dir`, nothing of it leading back: the warehouse's data path and the
    MLflow store's artifact locations are moved to the copy."""
    source = prepared.data_dir
    shutil.copytree(
        source,
        data_dir,
        ignore=lambda folder, names: (
            [n for n in names if n in NOT_COPIED] if Path(folder) == source else []
        ),
    )
    copy = Settings.under(data_dir)
    relocate(copy)
    store = copy.mlflow_tracking_uri.removeprefix("sqlite:///")
    if Path(store).is_file():
        old, new = str(source.resolve()), str(copy.data_dir.resolve())
        with sqlite3.connect(store) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                    name, kind = column[1], column[2].upper()
                    if "CHAR" in kind or "TEXT" in kind:
                        db.execute(
                            f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                            f'WHERE instr("{name}", ?) > 0',
                            [old, new, old],
                        )
    return copy


def run_in_airflow(
    settings: Settings, dag_id: str, day: date, extra: dict[str, str] | None = None
) -> tuple[str, str, dict[str, str]]:
    """A manual run of `dag_id` for D (its conf names the day) run by the scheduler with the
    LocalExecutor (each task its own process), with a DAG processor, a triggerer and the API
    server, on `settings`' folder; `extra` adds to Airflow's environment. Returns the run id,
    its final state and the environment to query the metadata DB with."""
    env = local_airflow.airflow_env(
        settings, {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor", **(extra or {})}
    )
    local_airflow.init(env)
    env = local_airflow.services_env(env, free_port())
    services = local_airflow.start_services(env, settings.data_dir / "services")
    try:
        run_id, state = local_airflow.run_once(services, dag_id, day, scheduled=False)
    finally:
        services.stop()
    return run_id, state, env
