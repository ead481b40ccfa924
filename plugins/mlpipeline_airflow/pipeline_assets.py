"""What `fraud_nightly` publishes, as Airflow assets a downstream DAG can schedule on.

Defined once here and imported by the nightly (as task outlets) and by consumers (as schedules),
so both sides name the same asset. Names (`fraud.scores`, ...) and URIs are stable whatever the
deployment: the URIs are in the pipeline's own `fraud-pipeline://` scheme (store, path), because
an asset whose URI followed a bucket, a data folder or a Redis port would be retired by Airflow
the day that setting changed, failing the task that still emits it. Where a publication
physically lives is in its event's `extra` (`table_uri`, `prefix`, ...).

Each event carries `extra` saying what was published (always `day`); `publish` sets it from
inside the publishing task. A task emits an event for every plain asset outlet whenever it
succeeds, and the champion changes only on some nights: `evaluate_register` declares the alias
`CHAMPION_CHANGES` instead and adds an event for `CHAMPION` through it only when the champion
actually changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import Asset, AssetAlias, get_current_context

from mlpipeline.core.landing import DATASETS
from mlpipeline.training.model_registry import CHAMPION_ALIAS, MODEL_NAME

GROUP = "fraud"
# mlpipeline.scoring.score_table.SCORE_TABLE_KEY, mlpipeline.features.export.EXPORT_ROOT and
# mlpipeline.monitoring.metrics_table.METRICS_TABLE_KEY: those modules import deltalake /
# pyarrow, which parsing a DAG must not load.
SCORE_TABLE_KEY = "scores/transaction_scores"
SNAPSHOT_EXPORT_ROOT = "features/customer_snapshot"
METRICS_TABLE_KEY = "monitoring/metrics"


SCHEME = "fraud-pipeline"


def _asset(name: str, path: str) -> Asset:
    return Asset(name=name, uri=f"{SCHEME}://{path}", group=GROUP)


RAW_BATCHES: dict[str, Asset] = {
    ds: _asset(f"fraud.raw.{ds}", f"warehouse/raw/{ds}_current") for ds in DATASETS
}
SNAPSHOT_EXPORT = _asset("fraud.snapshot_export", f"objectstore/{SNAPSHOT_EXPORT_ROOT}")
SCORES = _asset("fraud.scores", f"objectstore/{SCORE_TABLE_KEY}")
MONITORING = _asset("fraud.monitoring", f"objectstore/{METRICS_TABLE_KEY}")
ONLINE_SNAPSHOT = _asset("fraud.online_snapshot", "online-store/customer_snapshot")
# Default group: Airflow registers alias-emitted events under group "asset".
CHAMPION = Asset(name="fraud.champion", uri=f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
CHAMPION_CHANGES = AssetAlias(name="fraud.champion_changes")


def _pick(result: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: result.get(key) for key in keys}


def raw_batch_extra(result: dict[str, Any]) -> dict[str, Any]:
    return _pick(result, "day", "dataset", "batch_id", "revision", "rows", "status")


def snapshot_extra(result: dict[str, Any]) -> dict[str, Any]:
    return {"day": result["cutoff"], **_pick(result, "export_id", "prefix", "row_count")}


def scores_extra(result: dict[str, Any]) -> dict[str, Any]:
    return _pick(
        result,
        "day",
        "table_uri",
        "table_version",
        "rows_scored",
        "rows_to_score",
        "no_model_yet",
        "model_name",
        "model_version",
        "published",
    )


def monitoring_extra(result: dict[str, Any]) -> dict[str, Any]:
    """A day whose checks failed fails its task: no event. Checks are named `check.metric`."""
    return {
        "day": result["run_day"],
        **_pick(result, "scored_day", "model_version", "status", "checks", "drifted_features"),
        "warned_checks": [f"{c['check']}.{c['metric']}" for c in result["warned_checks"]],
    }


def online_extra(result: dict[str, Any]) -> dict[str, Any]:
    before = result.get("current_before") or {}
    return {
        "day": result["cutoff"],
        "snapshot_id": result["export_id"],
        "previous_snapshot_id": before.get("export_id"),
        **_pick(result, "feature_view", "outcome", "at"),
    }


def champion_extra(day: str, outcome: dict[str, Any]) -> dict[str, Any] | None:
    """The champion event's extra, or None when the champion did not change."""
    if not outcome.get("champion_version") or (
        outcome.get("champion_version") == outcome.get("champion_before")
    ):
        return None
    return {
        "day": day,
        "model_name": MODEL_NAME,
        "model_version": outcome["champion_version"],
        "previous_version": outcome.get("champion_before"),
        **_pick(outcome, "decision", "reason"),
    }


def publish(
    asset: Asset, extra: Callable[[dict[str, Any]], dict[str, Any]], result: dict[str, Any]
) -> dict[str, Any]:
    """Attach `extra(result)` to the event the running task emits for its outlet `asset`;
    returns the stage's `result` (the task's XCom)."""
    get_current_context()["outlet_events"][asset].extra = extra(result)
    return result


def emit_champion(extra: dict[str, Any] | None) -> None:
    """Emit a `CHAMPION` event through `CHAMPION_CHANGES` only when there is one to emit."""
    if extra is not None:
        get_current_context()["outlet_events"][CHAMPION_CHANGES].add(CHAMPION, extra=extra)
