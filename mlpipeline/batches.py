"""The batch registry: one row per batch and revision in `meta.batches`, every status change in
`meta.batch_events`.

Statuses: ingested → validated → current (the one the `raw.*_current` views show; the revision
it replaces becomes `superseded` and stays), or quarantined → released (then current) or
discarded.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import TYPE_CHECKING, Any

import duckdb

from mlpipeline.meta import ensure_meta, utcnow

if TYPE_CHECKING:
    from mlpipeline.ingest import PreparedRevision

log = logging.getLogger(__name__)


def get(con: duckdb.DuckDBPyConnection, batch_id: str, revision: str) -> dict[str, Any] | None:
    ensure_meta(con)
    cur = con.execute(
        "SELECT * FROM meta.batches WHERE batch_id = ? AND revision = ?", [batch_id, revision]
    )
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _event(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    revision: str,
    status: str,
    detail: str | None,
    run_id: str | None,
) -> None:
    con.execute(
        "INSERT INTO meta.batch_events VALUES (?, ?, ?, ?, ?, ?)",
        [batch_id, revision, status, detail, run_id, utcnow()],
    )


def register(
    con: duckdb.DuckDBPyConnection, prepared: PreparedRevision, *, status: str, run_id: str
) -> None:
    now = utcnow()
    error = json.dumps(prepared.error) if prepared.error else None
    con.execute(
        "INSERT INTO meta.batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            prepared.batch_id,
            prepared.revision,
            prepared.dataset,
            date.fromisoformat(prepared.day),
            status,
            json.dumps(prepared.source_objects),
            prepared.content_checksum,
            prepared.rows_declared,
            prepared.rows_read,
            prepared.rows_written,
            prepared.rows_rejected,
            prepared.object_key.rsplit("/", 1)[0] + "/" if prepared.object_key else None,
            error,
            now,
            now,
        ],
    )
    _event(con, prepared.batch_id, prepared.revision, status, error, run_id)


def set_status(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    revision: str,
    status: str,
    *,
    run_id: str | None,
    detail: str | None = None,
) -> None:
    con.execute(
        "UPDATE meta.batches SET status = ?, updated_at = ? WHERE batch_id = ? AND revision = ?",
        [status, utcnow(), batch_id, revision],
    )
    _event(con, batch_id, revision, status, detail, run_id)


def promote(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str, *, run_id: str | None
) -> str:
    """Make a validated (or released) revision the batch's current one, in one transaction.

    Promoting the revision that is already current changes nothing (a re-run)."""
    row = get(con, batch_id, revision)
    if row is None:
        raise LookupError(f"batch {batch_id} revision {revision} is not registered")
    if row["status"] == "current":
        return "current"
    if row["status"] not in {"validated", "released"}:
        raise ValueError(
            f"batch {batch_id} revision {revision} is '{row['status']}'; only a validated or "
            "released revision can become current (see `mlpipeline batches show`)"
        )
    con.execute("BEGIN TRANSACTION")
    try:
        previous = con.execute(
            "SELECT revision FROM meta.batches WHERE batch_id = ? AND status = 'current'",
            [batch_id],
        ).fetchall()
        for (old,) in previous:
            set_status(con, batch_id, old, "superseded", run_id=run_id, detail=f"by {revision}")
        set_status(con, batch_id, revision, "current", run_id=run_id)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    log.info("batch %s: revision %s is now current", batch_id, revision)
    return "current"


def current_revisions(con: duckdb.DuckDBPyConnection, up_to: date) -> dict[str, str]:
    """batch_id → current revision for every batch up to a day: the lineage of a build."""
    ensure_meta(con)
    rows = con.execute(
        "SELECT batch_id, revision FROM meta.batches WHERE status = 'current' AND dt <= ? "
        "ORDER BY batch_id",
        [up_to],
    ).fetchall()
    return dict(rows)
