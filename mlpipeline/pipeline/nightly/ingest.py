"""Ingest stages: wait for the landing, prepare, load, check and promote a revision."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from mlpipeline.pipeline.nightly.common import RevisionRejected, configured, object_store

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)


def landing_ready(dataset: str, day: str) -> bool:
    """Has the producer finished the day (`_SUCCESS` present)? Logs what is missing when not,
    so the waiting task's log says what the run waits for when it times out."""
    from mlpipeline.core.landing import LandingNotReady, read_success

    try:
        declared = read_success(object_store(), dataset, date.fromisoformat(day))
    except LandingNotReady as exc:
        log.warning("waiting: %s", exc)
        return False
    log.info("%s for %s: _SUCCESS declares %d file(s)", dataset, day, len(declared))
    return True


def landing_wait() -> dict[str, int]:
    """The sensor's poke interval and timeout (seconds), for the DAG at parse time: from the
    settings (the environment), since the scheduler reschedules and times out the sensor from
    the parsed DAG and parsing reads no configuration file."""
    settings = configured()
    return {
        "poke_interval": settings.landing_poke_seconds,
        "timeout": settings.landing_timeout_minutes * 60,
    }


def prepare(dataset: str, day: str) -> dict[str, Any]:
    """Read, parse and check the landed files; write the accepted rows aside (no warehouse)."""
    from mlpipeline.ingest.revisions import prepare_revision

    return prepare_revision(object_store(), dataset, date.fromisoformat(day)).to_dict()


def _prepared(prepared: dict[str, Any]):  # noqa: ANN202 - PreparedRevision
    from mlpipeline.ingest.batches import PreparedRevision

    return PreparedRevision(**prepared)


def load(prepared: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Copy the revision into `raw.<dataset>` and register it; a bad revision is quarantined."""
    from mlpipeline.ingest.revisions import load_revision
    from mlpipeline.warehouse import connect

    revision = _prepared(prepared)
    with connect(configured()) as con:
        status = load_revision(con, object_store(), revision, run_id)
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
    from mlpipeline.warehouse import connect, lake

    revision = _prepared(prepared)
    settings = configured()
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
            docs=quality.DataDocs.from_settings(settings, object_store()),
            run_name=run_id,
        )

        def settle(c: duckdb.DuckDBPyConnection) -> None:
            quality.record(c, outcome, run_id=run_id)
            current = batches.get(c, revision.batch_id, revision.revision)
            if current and current["status"] == "ingested":
                status = "validated" if outcome.success else "quarantined"
                detail = None if outcome.success else outcome.describe()
                batches.set_status(
                    c, revision.batch_id, revision.revision, status, run_id=run_id, detail=detail
                )

        lake.run_unit(con, f"raw check of {revision.batch_id} {revision.revision}", settle)
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
    with connect(configured()) as con:
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
