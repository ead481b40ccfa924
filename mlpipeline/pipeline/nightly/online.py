"""Online stages: export the snapshot, then write, verify and switch it in the online store."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from mlpipeline.core.config import pipeline_conf
from mlpipeline.core.landing import DATASETS
from mlpipeline.pipeline.nightly.common import NothingToDo, configured, object_store

if TYPE_CHECKING:
    from mlpipeline.online.store import RedisOnlineStore

log = logging.getLogger(__name__)


def export_snapshot(day: str) -> dict[str, Any]:
    """Export cutoff D to a new immutable folder; returns where (the manifest stays there)."""
    from mlpipeline.features import dbt_project
    from mlpipeline.features.export import export_snapshot as export
    from mlpipeline.ingest import batches
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.meta import update_day

    settings = configured()
    cutoff = date.fromisoformat(day)
    window = int(pipeline_conf()["ingest"]["history_window_days"])
    with connect(settings) as con:
        missing = batches.missing_batches(con, cutoff, window, DATASETS)
        if missing:
            log.warning(
                "cutoff %s is built on incomplete history: no current revision for %s",
                day,
                missing,
            )
        update_day(
            con,
            cutoff,
            incomplete_history=bool(missing),
            missing_batches=",".join(missing) or None,
            stale=False,
        )
        result = export(
            con,
            object_store(),
            cutoff,
            dbt_project.online_spec(),
            dbt_project.manifest_hash(),
            incomplete_history=bool(missing),
            missing_batches=missing,
        )
    return {
        "cutoff": day,
        "export_id": result.export_id,
        "prefix": result.prefix,
        "row_count": result.row_count,
    }


def _manifest(export: dict[str, Any]) -> dict[str, Any]:
    from mlpipeline.features.export import read_manifest

    return read_manifest(object_store(), export["prefix"])


def _online_store() -> RedisOnlineStore:
    from mlpipeline.online.store import RedisOnlineStore

    return RedisOnlineStore.from_settings(configured())


def push_staged(export: dict[str, Any], *, enabled: bool = True) -> dict[str, Any]:
    """Write the export into Redis aside from the current snapshot (skipped when the run's
    `push_online` param is false: the export stays in the object store, Redis is untouched)."""
    if not enabled:
        raise NothingToDo(
            f"push_online=false: snapshot {export['export_id']} of cutoff {export['cutoff']} is "
            "exported but not pushed; Redis keeps serving its current snapshot"
        )

    return _online_store().write(_manifest(export))


def verify_staged(export: dict[str, Any]) -> dict[str, Any]:
    """Count, checksum and parity sample of the staged snapshot against its export."""
    report = _online_store().verify(_manifest(export))
    return {**export, "verified": True, "report": report}


def switch_online(export: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
    """Make the verified staged snapshot current (compare-and-set on the cutoff) and record the
    switch in the object store beside Redis' own record. While a rollback is pinned the switch
    is skipped (the verified export waits aside until `mlpipeline online release`)."""
    if not export or not verified or verified.get("export_id") != export.get("export_id"):
        raise NothingToDo(
            "no verified staged snapshot from this run (export, push or verify did not succeed); "
            "Redis keeps serving its current snapshot"
        )
    result = _online_store().switch(_manifest(export))
    log.info("online switch: %s", result)
    if result["outcome"] == "skipped: pinned":
        raise NothingToDo(
            f"online snapshot pinned to export {result['pinned_to']} by a rollback; export "
            f"{export['export_id']} is verified and kept aside. Run `mlpipeline online release` "
            "(--switch-pending to serve it at once, or re-run this task after the release)"
        )
    return result
