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
import getpass
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
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
# Registered-model tags: the pin set by a rollback, and the versions that held `champion` in
# order (the last one is the current champion).
PIN_TAG = "champion_pin"
HISTORY_TAG = "champion_history"
HISTORY_LENGTH = 100
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


class RollbackError(RuntimeError):
    """A rollback or release that cannot be done as asked (no champion, nothing earlier)."""


@dataclass(frozen=True)
class ChampionPin:
    """`champion` held on `version` by a rollback; promotions wait until it is released."""

    version: str
    rolled_back_from: str
    pinned_at: str
    pinned_by: str
    reason: str

    def describe(self) -> str:
        return (
            f"champion is pinned to version {self.version} (rolled back from version "
            f"{self.rolled_back_from} at {self.pinned_at} by {self.pinned_by}: {self.reason}); "
            "run `mlpipeline model release` to let the nightly promote again"
        )


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _model_tags(mlflow_client: MlflowClient, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(mlflow_client.get_registered_model(name).tags)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def champion_pin(tracking_uri: str, name: str = MODEL_NAME) -> ChampionPin | None:
    """The rollback pin on the registered model, or None when promotions may move `champion`."""
    raw = _model_tags(client(tracking_uri), name).get(PIN_TAG)
    return ChampionPin(**json.loads(raw)) if raw else None


def champion_history(tracking_uri: str, name: str = MODEL_NAME) -> list[str]:
    """Versions that held `champion`, oldest first; the current champion is the last one (also
    when someone pointed the alias at a version by hand).

    Stores promoted before the history tag existed get it rebuilt from the versions'
    `promoted_at` tags (each promotion stamps one), leaving out versions rolled back since.
    """
    mlflow_client = client(tracking_uri)
    raw = _model_tags(mlflow_client, name).get(HISTORY_TAG)
    if raw:
        history = [str(v) for v in json.loads(raw)]
    else:
        promoted = [
            (v.tags["promoted_at"], int(v.version))
            for v in mlflow_client.search_model_versions(f"name = '{name}'")
            if "promoted_at" in v.tags and "rolled_back_at" not in v.tags
        ]
        history = [str(version) for _, version in sorted(promoted)]
    current = version_for_alias(tracking_uri, CHAMPION_ALIAS, name)
    if current is not None and (not history or history[-1] != str(current.version)):
        history.append(str(current.version))
    return history


def _set_history(mlflow_client: MlflowClient, name: str, history: list[str]) -> None:
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LENGTH:]))


def promote(tracking_uri: str, version: str, name: str = MODEL_NAME) -> bool:
    """Point `champion` at `version` and record it; False (nothing moved) while pinned.

    The pin is read again right before the alias moves, so a rollback done while the nightly
    was evaluating is not undone by that night's promotion.
    """
    pin = champion_pin(tracking_uri, name)
    if pin is not None:
        log.warning("not promoting %s version %s: %s", name, version, pin.describe())
        return False
    mlflow_client = client(tracking_uri)
    history = champion_history(tracking_uri, name)
    mlflow_client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    mlflow_client.set_model_version_tag(name, str(version), "promoted_at", _now())
    _set_history(mlflow_client, name, [*history, str(version)])
    log.info("%s version %s is now %s", name, version, CHAMPION_ALIAS)
    return True


def _restorable(mlflow_client: MlflowClient, name: str, version: str) -> bool:
    """A version a rollback may restore: still registered, scoreable (threshold and cutoff
    tags), and not itself rolled back earlier."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow_client.get_model_version(name, version)
    except MlflowException:
        log.warning("%s version %s is no longer registered; skipping it", name, version)
        return False
    tags = found.tags
    return THRESHOLD_TAG in tags and "training_cutoff" in tags and "rolled_back_at" not in tags


def rollback_champion(
    tracking_uri: str, *, reason: str, by: str | None = None, name: str = MODEL_NAME
) -> dict[str, Any]:
    """Restore the champion before the current one and pin it until `release_pin`.

    Rolling back again while pinned goes one more step back. The rolled-back version is tagged
    (`rolled_back_at`, `rolled_back_reason`) so it is never promoted again automatically.
    """
    mlflow_client = client(tracking_uri)
    current = version_for_alias(tracking_uri, CHAMPION_ALIAS, name)
    if current is None:
        raise RollbackError(f"{name} has no champion to roll back (no `champion` alias)")
    current_version = str(current.version)
    history = champion_history(tracking_uri, name)
    # The champions before the current one's latest reign, newest last.
    reign = max((i for i, v in enumerate(history) if v == current_version), default=len(history))
    earlier = history[:reign]
    while earlier and (
        earlier[-1] == current_version or not _restorable(mlflow_client, name, earlier[-1])
    ):
        earlier.pop()
    if not earlier:
        raise RollbackError(
            f"{name} version {current_version} is the first champion on record "
            f"(history {history}); there is no earlier champion to restore. Point the alias "
            "at a version by hand (MlflowClient.set_registered_model_alias) if you must."
        )
    target = earlier[-1]
    pin = ChampionPin(
        version=target,
        rolled_back_from=current_version,
        pinned_at=_now(),
        pinned_by=by or _operator(),
        reason=reason,
    )
    # Pin first: from here on no promotion moves the alias, whatever happens next.
    mlflow_client.set_registered_model_tag(name, PIN_TAG, json.dumps(asdict(pin)))
    mlflow_client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
    for key, value in (
        ("rolled_back_at", pin.pinned_at),
        ("rolled_back_by", pin.pinned_by),
        ("rolled_back_reason", reason),
    ):
        mlflow_client.set_model_version_tag(name, current_version, key, value)
    mlflow_client.set_model_version_tag(name, target, "restored_at", pin.pinned_at)
    _set_history(mlflow_client, name, earlier)
    log.warning(
        "%s rolled back from version %s to version %s and pinned (%s)",
        name,
        current_version,
        target,
        reason,
    )
    return {"champion": target, "rolled_back_from": current_version, "pin": asdict(pin)}


def release_pin(
    tracking_uri: str, *, by: str | None = None, name: str = MODEL_NAME
) -> dict[str, Any]:
    """Remove the rollback pin: the next nightly may promote again (the champion stays as is)."""
    pin = champion_pin(tracking_uri, name)
    champion = version_for_alias(tracking_uri, CHAMPION_ALIAS, name)
    champion_version = str(champion.version) if champion is not None else None
    if pin is None:
        log.info("%s is not pinned; nothing to release", name)
        return {"released": False, "champion": champion_version, "pin": None}
    mlflow_client = client(tracking_uri)
    mlflow_client.delete_registered_model_tag(name, PIN_TAG)
    if champion_version is not None:
        released_by = by or _operator()
        mlflow_client.set_model_version_tag(
            name, champion_version, "pin_released_at", f"{_now()} by {released_by}"
        )
    log.info("%s pin on version %s released; promotions resume", name, pin.version)
    return {"released": True, "champion": champion_version, "pin": asdict(pin)}
