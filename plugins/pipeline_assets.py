"""What `fraud_nightly` publishes, as Airflow assets a downstream DAG can schedule on.

Defined once here and imported by the nightly (as task outlets) and by consumers (as schedules),
so both sides name the same asset. Names are stable (`fraud.scores`, ...); URIs say where the
thing lives in this deployment (the bucket or local folder, the warehouse file, Redis) and are
read from the same environment as `Settings.from_env()`. Airflow 3 accepts any URI scheme that is
not `airflow` and normalises only the schemes a provider registers (`file`, `s3` with the Amazon
provider), so `duckdb:`, `redis://` and `models:/` URIs are kept as written.

Each event carries `extra` saying what was published (always `day`); `publish` sets it from
inside the publishing task. A task emits an event for every plain asset outlet whenever it
succeeds, and the champion changes only on some nights: `evaluate_register` declares the alias
`CHAMPION_CHANGES` instead and adds an event for `CHAMPION` through it only when the champion
actually changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import Asset, AssetAlias, get_current_context

from mlpipeline.config import Settings
from mlpipeline.landing import DATASETS
from mlpipeline.model_registry import CHAMPION_ALIAS, MODEL_NAME

GROUP = "fraud"
# mlpipeline.score.SCORE_TABLE_KEY and mlpipeline.export.EXPORT_ROOT: those modules import
# deltalake / pyarrow, which parsing a DAG must not load.
SCORE_TABLE_KEY = "scores/transaction_scores"
SNAPSHOT_EXPORT_ROOT = "features/customer_snapshot"


def _store_uri(settings: Settings, key: str) -> str:
    if settings.bucket:
        return f"s3://{settings.bucket}/{key}"
    return (settings.local_store_root / key).as_uri()


def _redis_uri(settings: Settings) -> str:
    """REDIS_URL without credentials or options; else the folder of the local run's server."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return (settings.data_dir / "redis").as_uri()
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/0", "", ""))


def _assets(settings: Settings) -> dict[str, Asset]:
    # No authority (Airflow would drop an empty one): duckdb:/path/to/warehouse.duckdb/...
    warehouse = f"duckdb:{settings.duckdb_path}"
    assets = {
        f"raw_{ds}": Asset(name=f"fraud.raw.{ds}", uri=f"{warehouse}/raw/{ds}_current", group=GROUP)
        for ds in DATASETS
    }
    assets["snapshot"] = Asset(
        name="fraud.snapshot_export",
        uri=_store_uri(settings, SNAPSHOT_EXPORT_ROOT),
        group=GROUP,
    )
    assets["scores"] = Asset(
        name="fraud.scores", uri=_store_uri(settings, SCORE_TABLE_KEY), group=GROUP
    )
    assets["online"] = Asset(
        name="fraud.online_snapshot", uri=f"{_redis_uri(settings)}/customer_snapshot", group=GROUP
    )
    # Default group: Airflow registers alias-emitted events under group "asset".
    assets["champion"] = Asset(name="fraud.champion", uri=f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    return assets


_ASSETS = _assets(Settings.from_env())
RAW_BATCHES: dict[str, Asset] = {ds: _ASSETS[f"raw_{ds}"] for ds in DATASETS}
SNAPSHOT_EXPORT = _ASSETS["snapshot"]
SCORES = _ASSETS["scores"]
ONLINE_SNAPSHOT = _ASSETS["online"]
CHAMPION = _ASSETS["champion"]
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
