"""The nightly workflow's stages as plain calls: what each Airflow task of `fraud_nightly` runs,
and what the catch-up runs day by day outside Airflow.

Every stage takes and returns small JSON-able values (days as ISO strings, manifests, ids), so
tasks hand data to each other through the object store, the warehouse, Redis and MLflow, never
through a worker's local files. Heavy libraries are imported inside the stages so that parsing
the DAG stays fast.
"""

from __future__ import annotations

import dataclasses
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


# --- online ------------------------------------------------------------------------------------


def export_snapshot(day: str) -> dict[str, Any]:
    """Export cutoff D to a new immutable folder; returns where (the manifest stays there)."""
    from mlpipeline import transform
    from mlpipeline.export import export_snapshot as export
    from mlpipeline.warehouse import connect

    settings = _settings()
    with connect(settings, read_only=True) as con:
        result = export(
            con,
            _store(),
            date.fromisoformat(day),
            transform.online_spec(),
            transform.manifest_hash(),
        )
    return {
        "cutoff": day,
        "export_id": result.export_id,
        "prefix": result.prefix,
        "row_count": result.row_count,
    }


def _manifest(export: dict[str, Any]) -> dict[str, Any]:
    from mlpipeline.export import read_manifest

    return read_manifest(_store(), export["prefix"])


def push_staged(export: dict[str, Any]) -> dict[str, Any]:
    """Write the export into Redis aside from the current snapshot."""
    from mlpipeline import online

    return online.push_staged(online.redis_client(_settings()), _store(), _manifest(export))


def verify_staged(export: dict[str, Any]) -> dict[str, Any]:
    """Count, checksum and parity sample of the staged snapshot against its export."""
    from mlpipeline import online

    report = online.verify_staged(online.redis_client(_settings()), _manifest(export))
    return {**export, "verified": True, "report": report}


def switch_online(export: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
    """Make the verified staged snapshot current (compare-and-set on the cutoff) and record the
    switch in the object store beside Redis' own record."""
    import json

    from mlpipeline import online
    from mlpipeline.meta import utcnow

    if not export or not verified or verified.get("export_id") != export.get("export_id"):
        raise NothingToDo(
            "no verified staged snapshot from this run (export, push or verify did not succeed); "
            "Redis keeps serving its current snapshot"
        )
    result = online.switch(online.redis_client(_settings()), _manifest(export))
    at = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    _store().put_bytes(
        f"features/customer_snapshot/switches/{at}-{export['export_id']}.json",
        json.dumps(result, default=str, indent=2).encode(),
    )
    log.info("online switch: %s", result)
    return result


# --- training ----------------------------------------------------------------------------------


def check_training_set(day: str, run_id: str, *, enabled: bool = True) -> dict[str, Any]:
    """GX gate on the training set; skipped (with the reason) when training is off or at cold
    start, so that scoring goes on with whatever champion exists."""
    from mlpipeline import gates, quality
    from mlpipeline.split import read_training_set
    from mlpipeline.train import training_skip_reason
    from mlpipeline.warehouse import connect

    if not enabled:
        raise NothingToDo("training is switched off for this run (param train=false)")
    cutoff = date.fromisoformat(day)
    with connect(_settings()) as con:
        frame = read_training_set(con, cutoff)
        reason = training_skip_reason(frame)
        if reason:
            raise NothingToDo(f"cold start, training skipped for cutoff {day}: {reason}")
        outcome = gates.training_set_gate(frame, cutoff)
        quality.record(con, outcome, run_id=run_id)
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {"rows": outcome.rows, "positives": int(frame["is_fraud"].sum())}


def split(day: str, checked: dict[str, Any]) -> dict[str, Any]:
    """Split the matured labelled rows and persist the split; training reads it from there."""
    from mlpipeline import transform
    from mlpipeline.split import persist_split, read_training_set, split_dataset
    from mlpipeline.train import batch_revisions
    from mlpipeline.warehouse import connect

    cutoff = date.fromisoformat(day)
    with connect(_settings(), read_only=True) as con:
        frame = read_training_set(con, cutoff)
        revisions = batch_revisions(con, cutoff)
    conf = pipeline_conf()["split"]
    result = split_dataset(frame, strategy=conf["strategy"], ratios=tuple(conf["ratios"]))
    for warning in result.warnings:
        log.warning("split %s: %s", result.split_id, warning)
    persist_split(_store(), result)
    return {
        "split_id": result.split_id,
        "warnings": list(result.warnings),
        "rows": checked.get("rows"),
        "lineage": {
            "training_cutoff": day,
            "batch_revisions": revisions,
            "dbt_manifest_hash": transform.manifest_hash(),
        },
    }


def candidates(split_info: dict[str, Any]) -> list[dict[str, Any]]:
    """One training job per configured candidate (conf/candidates.yaml)."""
    from mlpipeline.train import load_candidates

    return [{**split_info, "candidate": c.name} for c in load_candidates()]


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one candidate on the persisted split and log it to MLflow (reused when identical)."""
    from mlpipeline import transform
    from mlpipeline.split import load_split
    from mlpipeline.train import load_candidates, train_candidate

    candidate = next(c for c in load_candidates() if c.name == job["candidate"])
    result = train_candidate(
        load_split(_store(), job["split_id"]),
        candidate,
        feature_columns=transform.online_spec().features,
        tracking_uri=_settings().mlflow_tracking_uri,
        lineage=job["lineage"],
    )
    return result.to_dict()


def evaluate_and_promote(
    day: str, split_info: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """Evaluate the candidates; move `champion` / `challenger` as the promotion rules say."""
    from mlpipeline import evaluate, transform
    from mlpipeline.split import load_split
    from mlpipeline.train import CandidateResult

    outcome = evaluate.evaluate_and_promote(
        [CandidateResult.from_dict(r) for r in results if r],
        load_split(_store(), split_info["split_id"]),
        feature_columns=transform.online_spec().features,
        tracking_uri=_settings().mlflow_tracking_uri,
    )
    log.info("promotion for cutoff %s: %s (%s)", day, outcome.decision, outcome.reason)
    return outcome.to_dict()


# --- scoring -----------------------------------------------------------------------------------


def score(day: str, run_id: str) -> dict[str, Any]:
    """Score D's transactions with the champion resolved now to an exact version (or record
    "no model yet"), then mark the day published once its snapshot export exists too."""
    from mlpipeline import model_registry
    from mlpipeline import score as scoring
    from mlpipeline.export import ExportNotFound, latest_export
    from mlpipeline.meta import update_day
    from mlpipeline.warehouse import connect

    settings = _settings()
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    result = scoring.score_day(
        day,
        settings=settings,
        champion=champion,
        load_model=model_registry.load_model,
        run_id=run_id,
    )
    try:
        export = latest_export(_store(), day)
    except ExportNotFound:
        export = None
    with connect(settings) as con:
        update_day(
            con,
            date.fromisoformat(day),
            export_id=export["export_id"] if export else None,
            snapshot_rows=export["row_count"] if export else None,
            published=export is not None,
        )
    if export is None:
        log.warning("day %s scored but not published: no snapshot export for cutoff %s", day, day)
    return {**dataclasses.asdict(result), "day": day, "published": export is not None}
