"""The registered model `fraud_detector` in MLflow: connection, experiment, aliases, champion.

Every stage that talks to MLflow goes through here, so the tracking URI is checked once,
artifacts land next to a local sqlite store (not in the working directory), and MLflow's usage
telemetry is switched off before MLflow starts its telemetry client. MLflow is imported lazily:
DAG files import the library and must stay quick to parse.

Serving reads the model an alias names (`champion`); scoring records the exact version it
resolved. Every move of `champion` goes through here: a promotion appends the version to the
champion history (a registered-model tag), and `rollback_champion` restores the previous entry
and pins it (another registered-model tag) until `release_pin`. The pin lives in MLflow, not in
the warehouse, so on-call can roll back whatever the nightly is doing there, and a retry of
the nightly cannot undo it: promotion refuses to move a pinned champion.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlpipeline.core.days import parse_day
from mlpipeline.training import model_artifact

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MODEL_NAME = "fraud_detector"
EXPERIMENT = "fraud_detector"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
THRESHOLD_TAG = "decision_threshold"
_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# The warehouse snapshot a version's training set was read from (DuckLake time travel).
SNAPSHOT_TAG = "warehouse_snapshot"
LINEAGE_TAGS = ("training_cutoff", "split_id", "batch_revisions", "dbt_manifest_hash", "git_commit")


def mlflow_module() -> ModuleType:
    """Import MLflow with its telemetry off (an explicit MLFLOW_DISABLE_TELEMETRY wins)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.telemetry import get_telemetry_client, set_telemetry_client

    if get_telemetry_client() is not None:
        # MLflow was imported before the variable was set: re-evaluate, which drops the client.
        set_telemetry_client()
    return mlflow


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:"):
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    if not tracking_uri.startswith("sqlite:///") or not path.startswith("/"):
        raise ValueError(
            f"MLflow tracking URI {tracking_uri!r} is not absolute; use "
            "sqlite:////abs/path/mlflow.db (four slashes) so every task finds the same store "
            "whatever its working directory"
        )
    return Path(path)


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts next to a sqlite store; a tracking server (http) manages its own."""
    db = _sqlite_path(tracking_uri)
    return (db.parent / "artifacts").as_uri() if db else None


def _prepare_store(tracking_uri: str) -> None:
    """A SQLite store's folder and schema, created by one process at a time: MLflow creates or
    upgrades the tables when a store is first opened, and two tasks doing it at once (the
    nightly's parallel training tasks on a fresh store) collide ("duplicate column")."""
    db = _sqlite_path(tracking_uri)
    if not db:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    # Per MLflow version: an upgrade migrates the tables once more, under the lock again.
    ready = db.with_name(f"{db.name}.ready-{mlflow_module().__version__}")
    if ready.exists():
        return
    with (db.with_name(db.name + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            SqlAlchemyStore(tracking_uri, artifact_location(tracking_uri))
            ready.touch()


def client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for tracking and registry at `tracking_uri` (created if local)."""
    mlflow = mlflow_module()
    _prepare_store(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# Both wordings of Airflow's deprecated-import warnings ("The `airflow.x.y` attribute is
# deprecated..." and "The `airflow.x.y` is deprecated and will be removed...").
DEPRECATED_AIRFLOW_ATTRIBUTE = r"The `airflow\.\S+` (attribute )?is deprecated"


@contextmanager
def tracking(tracking_uri: str) -> Iterator[ModuleType]:
    """Point MLflow's fluent API (start_run, log_model, ...) at `tracking_uri` for a block."""
    mlflow = mlflow_module()
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; restoring MLflow's default through it
    # would leave the variable pointing at a store in the working directory.
    env_before = {var: os.environ.get(var) for var in _URI_VARS}
    _prepare_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            # skops finds where a function lives by reading its name from every loaded module;
            # in an Airflow task each read of one of Airflow's deprecated-module shims warns
            # (about 1,200 lines per task log). They say nothing about this code: ignored
            # while MLflow saves or loads a model, every other warning still shows.
            warnings.filterwarnings("ignore", message=DEPRECATED_AIRFLOW_ATTRIBUTE)
            yield mlflow
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for var, value in env_before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


# MLflow 3's UI opens an experiment of unknown kind in its GenAI view (traces, tokens); this
# one is classic model development: runs, metrics, models.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(mlflow_client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it with artifacts next to the store when it is new."""
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get("mlflow.experimentKind") is None:
            for key, value in EXPERIMENT_KIND.items():
                mlflow_client.set_experiment_tag(existing.experiment_id, key, value)
        return existing.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.create_experiment(
            name, artifact_location=artifact_location(tracking_uri), tags=EXPERIMENT_KIND
        )
    except MlflowException:
        # Another task created it between our lookup and create.
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def ensure_registered_model(mlflow_client: MlflowClient, name: str = MODEL_NAME) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        try:
            mlflow_client.create_registered_model(
                name, description="Card-payment fraud classifier trained by the nightly pipeline."
            )
        except MlflowException:
            mlflow_client.get_registered_model(name)


def version_for_alias(tracking_uri: str, alias: str, name: str = MODEL_NAME) -> Any | None:
    """The ModelVersion an alias points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias INVALID_PARAMETER_VALUE.
        absent = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
        )
        if absent:
            return None
        raise


@dataclass(frozen=True)
class ChampionRef:
    """An exact model version to score with, and how to reach it."""

    name: str
    version: str
    run_id: str
    model_uri: str
    decision_threshold: float
    training_cutoff: date
    tracking_uri: str
    alias: str = CHAMPION_ALIAS


def resolve_champion(
    tracking_uri: str, *, alias: str = CHAMPION_ALIAS, name: str = MODEL_NAME
) -> ChampionRef | None:
    """Resolve the alias to an exact version now; None when no model has been promoted yet."""
    version = version_for_alias(tracking_uri, alias, name)
    if version is None:
        return None
    missing = [t for t in (THRESHOLD_TAG, "training_cutoff") if t not in version.tags]
    if missing:
        raise ValueError(
            f"{name} version {version.version} (alias {alias!r}) lacks tags {missing}; it was not "
            "registered by the pipeline. Re-run evaluate/promote or point the alias elsewhere."
        )
    return ChampionRef(
        name=name,
        version=str(version.version),
        run_id=version.run_id,
        model_uri=f"models:/{name}/{version.version}",
        decision_threshold=float(version.tags[THRESHOLD_TAG]),
        training_cutoff=parse_day(version.tags["training_cutoff"]),
        tracking_uri=tracking_uri,
        alias=alias,
    )


def load_version(tracking_uri: str, version: str, name: str = MODEL_NAME) -> Any:
    """The scikit-learn Pipeline of one exact registered version (trusting only
    `model_artifact.TRUSTED_TYPES`, whatever the model's own MLmodel lists)."""
    with tracking(tracking_uri) as mlflow, tempfile.TemporaryDirectory(prefix="model-") as tmp:
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
        return model_artifact.load_pipeline(Path(local), what=f"{name} version {version}")


def load_model(ref: ChampionRef) -> Any:
    """The resolved version's scikit-learn Pipeline: raw row in, `predict_proba` out."""
    log.info(
        "loading %s version %s (%s) from %s", ref.name, ref.version, ref.alias, ref.tracking_uri
    )
    return load_version(ref.tracking_uri, ref.version, ref.name)


# --- promotion history, rollback and pin --------------------------------------------------------
