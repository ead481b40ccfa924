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
import os
from datetime import date
from typing import TYPE_CHECKING, Any

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.landing import DATASETS

if TYPE_CHECKING:
    from mlpipeline.online.store import OnlineStore

log = logging.getLogger(__name__)


class NothingToDo(Exception):  # noqa: N818 - an outcome, not an error
    """The stage has nothing to do and says why (cold start, nothing verified to switch)."""


class RevisionRejected(ValueError):
    """A landed revision broke the landing contract; it is registered with `status`
    (quarantined: an operator may release it; discarded: it never will be)."""

    def __init__(self, message: str, *, batch_id: str, revision: str, status: str) -> None:
        super().__init__(message)
        self.batch_id, self.revision, self.status = batch_id, revision, status


def _settings() -> Settings:
    return Settings.from_env()


def _store():  # noqa: ANN202 - ObjectStore
    from mlpipeline.core.objectstore import from_settings

    return from_settings(_settings())


# --- ingest ------------------------------------------------------------------------------------


def landing_ready(dataset: str, day: str) -> bool:
    """Has the producer finished the day (`_SUCCESS` present)? Logs what is missing when not,
    so the waiting task's log says what the run waits for when it times out."""
    from mlpipeline.core.landing import LandingNotReady, read_success

    try:
        declared = read_success(_store(), dataset, date.fromisoformat(day))
    except LandingNotReady as exc:
        log.warning("waiting: %s", exc)
        return False
    log.info("%s for %s: _SUCCESS declares %d file(s)", dataset, day, len(declared))
    return True


def landing_wait() -> dict[str, int]:
    """The sensor's poke interval and timeout (seconds) from pipeline.yaml."""
    conf = pipeline_conf()["ingest"]["wait_for_landing"]
    return {
        "poke_interval": int(conf["poke_interval_seconds"]),
        "timeout": int(conf["timeout_minutes"]) * 60,
    }


def prepare(dataset: str, day: str) -> dict[str, Any]:
    """Read, parse and check the landed files; write the accepted rows aside (no warehouse)."""
    from mlpipeline.ingest.revisions import prepare_revision

    return prepare_revision(_store(), dataset, date.fromisoformat(day)).to_dict()


def _prepared(prepared: dict[str, Any]):  # noqa: ANN202 - PreparedRevision
    from mlpipeline.ingest.batches import PreparedRevision

    return PreparedRevision(**prepared)


def load(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Copy the revision into `raw.<dataset>` and register it; a bad revision is quarantined."""
    from mlpipeline.ingest.revisions import load_revision
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    with connect(_settings()) as con:
        status = load_revision(con, _store(), revision, run_id)
    if status in {"quarantined", "discarded"}:
        error = revision.error or {}
        why = (
            f"file {error.get('file')}: rule '{error.get('rule')}' broken: {error.get('detail')}"
            if error
            else "see its raw check results"
        )
        raise RevisionRejected(
            f"batch {revision.batch_id} revision {revision.revision} is {status}: {why}. "
            "Fix the landed files and re-run (new content is a new revision), or inspect with "
            f"`mlpipeline batches show {revision.batch_id}` and release it with "
            f"`mlpipeline batches release {revision.batch_id}`.",
            batch_id=revision.batch_id,
            revision=revision.revision,
            status=status,
        )
    return {
        "batch_id": revision.batch_id,
        "revision": revision.revision,
        "status": status,
        "rows_written": revision.rows_written,
        "rows_rejected": revision.rows_rejected,
    }


def check_raw(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """GX gate on the revision before promotion; a failure quarantines the revision."""
    from mlpipeline import quality
    from mlpipeline.ingest import batches, gates
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    settings = _settings()
    with connect(settings) as con:
        correction = batches.corrected_by(con, revision.batch_id, revision.revision)
        if correction is not None:
            log.info(
                "batch %s revision %s was corrected by the operator (revision %s is current); "
                "not checked again",
                revision.batch_id,
                revision.revision,
                correction,
            )
            return {"suite": f"raw_{revision.dataset}", "corrected_by": correction}
        outcome = gates.raw_gate(
            con,
            revision.batch_id,
            revision.revision,
            docs=quality.DataDocs.from_settings(settings, _store()),
            run_name=run_id,
        )
        quality.record(con, outcome, run_id=run_id)
        current = batches.get(con, revision.batch_id, revision.revision)
        if current and current["status"] == "ingested":
            status = "validated" if outcome.success else "quarantined"
            detail = None if outcome.success else outcome.describe()
            batches.set_status(
                con, revision.batch_id, revision.revision, status, run_id=run_id, detail=detail
            )
        waived = batches.was_released(con, revision.batch_id, revision.revision)
    if not outcome.success and waived:
        log.warning(
            "batch %s revision %s fails its raw check but was released by an operator; going on: "
            "%s",
            revision.batch_id,
            revision.revision,
            outcome.describe(),
        )
    elif not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {
        "suite": outcome.suite,
        "subject": outcome.subject,
        "warnings": len(outcome.warnings),
        "data_docs": outcome.page.key if outcome.page else None,
    }


def promote(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Make the validated revision the batch's current one, then settle the chargebacks that
    waited for a transaction (`expired`: those that waited too long, for an alert)."""
    from mlpipeline.ingest import batches, pending_rows
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    with connect(_settings()) as con:
        status = batches.promote(con, revision.batch_id, revision.revision, run_id=run_id)
        settled = pending_rows.settle(con, date.fromisoformat(revision.day))
    return {
        "day": revision.day,
        "dataset": revision.dataset,
        "batch_id": revision.batch_id,
        "revision": revision.revision,
        "rows": revision.rows_written,
        "status": status,
        "pending": settled.pending,
        "expired": settled.expired,
        "pending_days": settled.pending_days,
    }


# --- features ----------------------------------------------------------------------------------


def build_features(day: str, *, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build` of the feature project for processing day D (prod target)."""
    from mlpipeline.features import transform

    return transform.build(date.fromisoformat(day), settings=_settings(), full_refresh=full_refresh)


def dbt_tasks() -> dict[str, Any]:
    """What the DAG's Cosmos task group needs: the dbt project, the manifest its tasks are
    rendered from, the profile, and the environment dbt runs with (the prod target's warehouse).
    Reads files only, so parsing the DAG stays fast; the manifest comes from setup."""
    from mlpipeline.features import dbt_project, transform

    settings = _settings()
    project = settings.dbt_project_dir
    manifest = dbt_project.manifest_path(project)
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} is missing: the nightly's dbt tasks are rendered from it. Build it with "
            "`mlpipeline dbt-manifest` (setup does: mlpipeline.devtools.local_airflow.init)"
        )
    if not dbt_project.manifest_is_current(project):
        log.warning(
            "%s was parsed from older dbt code than %s: the DAG shows the old models and tests "
            "until `mlpipeline dbt-manifest` runs",
            manifest,
            project,
        )
    return {
        "project_dir": str(project),
        "manifest": str(manifest),
        "profiles_yml": str(project / "profiles.yml"),
        # What a worker's own environment lacks: rendered into the tasks (and shown in the UI),
        # so a catalog's password set in the deployment's environment is never copied here.
        "env": {
            **{k: v for k, v in transform.prod_env(settings).items() if k not in os.environ},
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
        },
    }


def check_snapshot(day: str, run_id: str) -> dict[str, Any]:
    """GX gate on cutoff D's snapshot: it gates export, push, training and scoring."""
    from mlpipeline import quality
    from mlpipeline.features import dbt_project
    from mlpipeline.ingest import gates
    from mlpipeline.warehouse import connect

    settings, spec = _settings(), dbt_project.online_spec()
    with connect(settings) as con:
        outcome = gates.snapshot_gate(
            con,
            date.fromisoformat(day),
            feature_columns=[f.name for f in spec.features],
            ttl_days=spec.ttl_days,
            docs=quality.DataDocs.from_settings(settings, _store()),
            run_name=run_id,
        )
        quality.record(con, outcome, run_id=run_id)
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {
        "suite": outcome.suite,
        "rows": outcome.rows,
        "warnings": len(outcome.warnings),
        "data_docs": outcome.page.key if outcome.page else None,
    }


# --- online ------------------------------------------------------------------------------------


def export_snapshot(day: str) -> dict[str, Any]:
    """Export cutoff D to a new immutable folder; returns where (the manifest stays there)."""
    from mlpipeline.features import dbt_project
    from mlpipeline.features.export import export_snapshot as export
    from mlpipeline.ingest import batches
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.meta import update_day

    settings = _settings()
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
            _store(),
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

    return read_manifest(_store(), export["prefix"])


def _online_store() -> OnlineStore:
    from mlpipeline.online.store import RedisOnlineStore

    return RedisOnlineStore.from_settings(_settings())


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


# --- training ----------------------------------------------------------------------------------


def training_wanted(train: bool | None, run_type: object) -> tuple[bool, str]:
    """Whether this run trains, and why: the `train` param when set, else every run but a
    backfill (re-running history must not retrain and re-promote on old cutoffs by accident)."""
    kind = str(getattr(run_type, "value", run_type))
    if train is not None:
        return bool(train), f"param train={str(bool(train)).lower()}"
    if kind == "backfill":
        return False, "backfill runs do not train unless the run sets param train=true"
    return True, f"{kind} run (param train not set)"


def training_parallelism() -> int:
    """Candidates trained at once (candidates.yaml resources.parallel_tasks): the DAG's limit on
    mapped `train` tasks, read at parse time without importing the training stack."""
    import yaml

    from mlpipeline.core.config import candidates_path

    resources = yaml.safe_load(candidates_path().read_text()).get("resources") or {}
    value = int(resources.get("parallel_tasks", 2))
    if value < 1:
        raise ValueError(f"resources.parallel_tasks must be at least 1, got {value}")
    return value


def check_training_set(
    day: str, run_id: str, *, train: bool | None = None, run_type: object = "manual"
) -> dict[str, Any]:
    """GX gate on the training set; skipped (with the reason) when this run does not train
    (`training_wanted`) or at cold start, so that scoring goes on with whatever champion exists."""
    from mlpipeline import quality
    from mlpipeline.ingest import gates
    from mlpipeline.training.split import read_training_set
    from mlpipeline.training.train import training_skip_reason
    from mlpipeline.warehouse import connect

    wanted, why = training_wanted(train, run_type)
    if not wanted:
        raise NothingToDo(f"training skipped for cutoff {day}: {why}")
    log.info("training for cutoff %s: %s", day, why)
    cutoff = date.fromisoformat(day)
    settings = _settings()
    with connect(settings) as con:
        frame = read_training_set(con, cutoff)
        reason = training_skip_reason(frame)
        if reason:
            raise NothingToDo(f"cold start, training skipped for cutoff {day}: {reason}")
        outcome = gates.training_set_gate(
            con,
            frame,
            cutoff,
            maturity_days=gates.label_maturity_days(settings),
            docs=quality.DataDocs.from_settings(settings, _store()),
            run_name=run_id,
        )
        quality.record(con, outcome, run_id=run_id)
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return {
        "rows": outcome.rows,
        "positives": int(frame["is_fraud"].sum()),
        "data_docs": outcome.page.key if outcome.page else None,
    }


def split(day: str, checked: dict[str, Any]) -> dict[str, Any]:
    """Split the matured labelled rows and persist the split; training reads it from there."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training import model_registry
    from mlpipeline.training.split import persist_split, read_training_set, split_dataset
    from mlpipeline.training.train import batch_revisions
    from mlpipeline.warehouse import connect, lake

    cutoff = date.fromisoformat(day)
    with connect(_settings(), read_only=True) as con:
        # One transaction: the rows, their revisions and the snapshot id are one snapshot's.
        snapshot, frame, revisions = lake.run_unit(
            con,
            f"read of the training set for {day}",
            lambda c: (
                lake.snapshot_id(c),
                read_training_set(c, cutoff),
                batch_revisions(c, cutoff),
            ),
        )
    conf = pipeline_conf()["split"]
    # split_dataset logs each warning; they travel on to every candidate's MLflow run.
    result = split_dataset(frame, strategy=conf["strategy"], ratios=tuple(conf["ratios"]))
    persist_split(_store(), result)
    return {
        "split_id": result.split_id,
        "warnings": list(result.warnings),
        "rows": checked.get("rows"),
        "lineage": {
            "training_cutoff": day,
            "batch_revisions": revisions,
            "dbt_manifest_hash": dbt_project.manifest_hash(),
            model_registry.SNAPSHOT_TAG: snapshot,
        },
    }


def candidates(split_info: dict[str, Any]) -> list[dict[str, Any]]:
    """One training job per configured candidate (conf/candidates.yaml)."""
    from mlpipeline.training.train import load_candidates

    return [{**split_info, "candidate": c.name} for c in load_candidates()]


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one candidate on the persisted split and log it to MLflow (reused when identical)."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training.split import load_split
    from mlpipeline.training.train import load_candidates, train_candidate

    candidate = next(c for c in load_candidates() if c.name == job["candidate"])
    result = train_candidate(
        load_split(_store(), job["split_id"]),
        candidate,
        feature_columns=dbt_project.online_spec().features,
        tracking_uri=_settings().mlflow_tracking_uri,
        lineage=job["lineage"],
    )
    return result.to_dict()


def evaluate_and_promote(
    day: str, split_info: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """Evaluate the candidates; move `champion` / `challenger` as the promotion rules say."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training import promotion
    from mlpipeline.training.split import load_split
    from mlpipeline.training.train import CandidateResult

    outcome = promotion.evaluate_and_promote(
        [CandidateResult.from_dict(r) for r in results if r],
        load_split(_store(), split_info["split_id"]),
        feature_columns=dbt_project.online_spec().features,
        tracking_uri=_settings().mlflow_tracking_uri,
    )
    log.info("promotion for cutoff %s: %s (%s)", day, outcome.decision, outcome.reason)
    return outcome.to_dict()


# --- scoring -----------------------------------------------------------------------------------


def score(day: str, run_id: str) -> dict[str, Any]:
    """Score D's transactions with the champion resolved now to an exact version (or record
    "no model yet"), then mark the day published once its snapshot export exists too."""
    from mlpipeline.features.export import ExportNotFound, latest_export
    from mlpipeline.scoring import score as scoring
    from mlpipeline.training import model_registry
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.meta import update_day

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
