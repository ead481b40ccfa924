"""The registered model `fraud_detector` in MLflow: connection, experiment, aliases, champion.

Every stage that talks to MLflow goes through here, so the tracking URI is checked once,
artifacts land next to a local sqlite store (not in the working directory), and MLflow's usage
telemetry is switched off before MLflow starts its telemetry client. MLflow is imported lazily:
DAG files import the library and must stay quick to parse.

Serving reads the model an alias names (`champion`); scoring records the exact version it
resolved. A pinned rollback (a later issue) is an alias too, so `resolve_champion(alias=...)` is
the seam where it will plug in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlpipeline.days import parse_day

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MODEL_NAME = "fraud_detector"
EXPERIMENT = "fraud_detector"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
THRESHOLD_TAG = "decision_threshold"
_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
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
    db = _sqlite_path(tracking_uri)
    if db:
        db.parent.mkdir(parents=True, exist_ok=True)


def client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for tracking and registry at `tracking_uri` (created if local)."""
    mlflow = mlflow_module()
    _prepare_store(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


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
        yield mlflow
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for var, value in env_before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def ensure_experiment(mlflow_client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it with artifacts next to the store when it is new."""
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.create_experiment(
            name, artifact_location=artifact_location(tracking_uri)
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
    """The scikit-learn Pipeline of one exact registered version."""
    with tracking(tracking_uri) as mlflow:
        return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def load_model(ref: ChampionRef) -> Any:
    """The resolved version's scikit-learn Pipeline: raw row in, `predict_proba` out."""
    log.info(
        "loading %s version %s (%s) from %s", ref.name, ref.version, ref.alias, ref.tracking_uri
    )
    return load_version(ref.tracking_uri, ref.version, ref.name)
