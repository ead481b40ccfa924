"""Who is champion: promotion moves the alias and records the history, a rollback restores the
previous champion and pins it, a release lets the nightly promote again."""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlpipeline.training.model_registry import (
    CHAMPION_ALIAS,
    MODEL_NAME,
    THRESHOLD_TAG,
    client,
    version_for_alias,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# Registered-model tags: the pin set by a rollback, and the versions that held `champion` in
# order (the last one is the current champion).
PIN_TAG = "champion_pin"
HISTORY_TAG = "champion_history"
HISTORY_LENGTH = 100


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
