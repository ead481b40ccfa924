"""The nightly workflow's stages as plain calls: what each Airflow task of `fraud_nightly` runs,
and what the catch-up runs day by day outside Airflow.

Every stage takes and returns small JSON-able values (days as ISO strings, manifests, ids), so
tasks hand data to each other through the object store, the warehouse, Redis and MLflow, never
through a worker's local files. Heavy libraries are imported inside the stages so that parsing
the DAG stays fast.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from mlpipeline.config import Settings, pipeline_conf
from mlpipeline.landing import DATASETS  # noqa: F401 - the DAG maps its ingest groups over it

log = logging.getLogger(__name__)



class NothingToDo(Exception):  # noqa: N818 - an outcome, not an error
    """The stage has nothing to do and says why (cold start, nothing verified to switch)."""


def _settings() -> Settings:
    return Settings.from_env()


def _store():  # noqa: ANN202 - ObjectStore
    from mlpipeline.objectstore import from_settings

    return from_settings(_settings())


# --- ingest ------------------------------------------------------------------------------------


def prepare(dataset: str, day: str) -> dict[str, Any]:
    """Read, parse and check the landed files; write the accepted rows aside (no warehouse)."""
    from mlpipeline.ingest import prepare_revision

    return prepare_revision(_store(), dataset, date.fromisoformat(day)).to_dict()


def _prepared(prepared: dict[str, Any]):  # noqa: ANN202 - PreparedRevision
    from mlpipeline.ingest import PreparedRevision

    return PreparedRevision(**prepared)


def load(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Copy the revision into `raw.<dataset>` and register it; a bad revision is quarantined."""
    from mlpipeline.ingest import load_revision
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    with connect(_settings()) as con:
        status = load_revision(con, _store(), revision, run_id)
    if status == "quarantined":
        error = revision.error or {}
        raise ValueError(
            f"batch {revision.batch_id} revision {revision.revision} is quarantined: "
            f"file {error.get('file')}: rule '{error.get('rule')}' broken: {error.get('detail')}. "
            "Fix the landed files and re-run, or inspect with "
            f"`mlpipeline batches show {revision.batch_id}`."
        )
    return {"batch_id": revision.batch_id, "revision": revision.revision, "status": status}


def check_raw(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """GX gate on the revision before promotion; a failure quarantines the revision."""
    from mlpipeline import batches, gates, quality
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    outcome = gates.raw_gate(_store(), revision)
    with connect(_settings()) as con:
        quality.record(con, outcome, run_id=run_id)
        current = batches.get(con, revision.batch_id, revision.revision)
        if current and current["status"] == "ingested":
            status = "validated" if outcome.success else "quarantined"
            detail = None if outcome.success else outcome.describe()
            batches.set_status(
                con, revision.batch_id, revision.revision, status, run_id=run_id, detail=detail
            )
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {"suite": outcome.suite, "subject": outcome.subject, "warnings": len(outcome.warnings)}


def promote(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Make the validated revision the batch's current one."""
    from mlpipeline import batches
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    with connect(_settings()) as con:
        status = batches.promote(con, revision.batch_id, revision.revision, run_id=run_id)
    return {"batch_id": revision.batch_id, "revision": revision.revision, "status": status}


# --- features ----------------------------------------------------------------------------------


def build_features(day: str, *, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build` of the feature project for processing day D (prod target)."""
    from mlpipeline import transform

    return transform.build(date.fromisoformat(day), settings=_settings(), full_refresh=full_refresh)


def check_snapshot(day: str, run_id: str) -> dict[str, Any]:
    """GX gate on cutoff D's snapshot: it gates export, push, training and scoring."""
    from mlpipeline import gates, quality
    from mlpipeline.warehouse import connect

    with connect(_settings()) as con:
        outcome = gates.snapshot_gate(con, date.fromisoformat(day))
        quality.record(con, outcome, run_id=run_id)
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {"suite": outcome.suite, "rows": outcome.rows, "warnings": len(outcome.warnings)}
