"""The batch registry: one row per batch and revision in `meta.batches`, every status change in
`meta.batch_events`.

Statuses: ingested → validated → current (the one the `raw.*_current` views show; the revision
it replaces becomes `superseded` and stays), or quarantined → released (then current) or
discarded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import claim as meta_claim
from mlpipeline.warehouse.meta import ensure_meta, update_day, utcnow

log = logging.getLogger(__name__)

# The event of a revision an operator made to correct the current one (`supersede`); its
# detail names the revision it supersedes.
CORRECTED = "corrected"


def get(con: duckdb.DuckDBPyConnection, batch_id: str, revision: str) -> dict[str, Any] | None:
    ensure_meta(con)
    cur = con.execute(
        "SELECT * FROM meta.batches WHERE batch_id = ? AND revision = ?", [batch_id, revision]
    )
    rows = cur.fetchall()  # to the end: a pending result would block the next relation query
    if not rows:
        return None
    return dict(zip([d[0] for d in cur.description], rows[0], strict=True))


def record_event(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    revision: str,
    status: str,
    detail: str | None,
    run_id: str | None,
) -> None:
    """One event of a revision (its own unit, or part of the caller's)."""
    lake.run_unit(
        con,
        f"event {status} of batch {batch_id} revision {revision}",
        lambda c: c.execute(
            "INSERT INTO meta.batch_events VALUES (?, ?, ?, ?, ?, ?)",
            [batch_id, revision, status, detail, run_id, utcnow()],
        ),
    )


def claim(con: duckdb.DuckDBPyConnection) -> None:
    """Claim the batch registry for the caller's transaction (see `meta.claim`): what keeps one
    registration per batch revision when two loads of it run at once."""
    ensure_meta(con)
    meta_claim(con, "batches")


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
    record_event(con, prepared.batch_id, prepared.revision, status, error, run_id)


def set_status(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    revision: str,
    status: str,
    *,
    run_id: str | None,
    detail: str | None = None,
) -> None:
    """The revision's new status and its event, as one unit: the two datasets' tasks of a night
    write the registry at once, and the one whose commit loses the race runs again."""

    def update(c: duckdb.DuckDBPyConnection) -> None:
        c.execute(
            "UPDATE meta.batches SET status = ?, updated_at = ? "
            "WHERE batch_id = ? AND revision = ?",
            [status, utcnow(), batch_id, revision],
        )
        record_event(c, batch_id, revision, status, detail, run_id)

    lake.run_unit(con, f"status {status} of batch {batch_id} revision {revision}", update)


def promote(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str, *, run_id: str | None
) -> str:
    """Make a validated (or released) revision the batch's current one, in one transaction.

    New content for a day changes every day processed after it (their history windows, and the
    chargebacks that waited for its transactions): those days are marked stale, so processing
    days in any order and then re-running the stale ones ends where an in-order run does.
    Promoting the revision that is already current changes nothing (a re-run)."""
    row = get(con, batch_id, revision)
    if row is None:
        raise LookupError(f"batch {batch_id} revision {revision} is not registered")
    if row["status"] == "current":
        return "current"
    correction = corrected_by(con, batch_id, revision)
    if correction is not None:
        log.info(
            "batch %s revision %s was corrected by the operator; revision %s stays current",
            batch_id,
            revision,
            correction,
        )
        return CORRECTED
    if row["status"] not in {"validated", "released"}:
        raise ValueError(
            f"batch {batch_id} revision {revision} is '{row['status']}'; only a validated or "
            "released revision can become current (see `mlpipeline batches show`)"
        )

    def make_current(c: duckdb.DuckDBPyConnection) -> list[date]:
        if get(c, batch_id, revision)["status"] == "current":
            return []  # a concurrent promotion of the same revision committed first
        previous = c.execute(
            "SELECT revision FROM meta.batches WHERE batch_id = ? AND status = 'current'",
            [batch_id],
        ).fetchall()
        for (old,) in previous:
            set_status(c, batch_id, old, "superseded", run_id=run_id, detail=f"by {revision}")
        set_status(c, batch_id, revision, "current", run_id=run_id)
        later = _processed_after(c, row["dt"])
        for day in later:
            update_day(c, day, stale=True)
        return later

    stale = lake.run_unit(con, f"promotion of {batch_id} revision {revision}", make_current)
    log.info("batch %s: revision %s is now current", batch_id, revision)
    if stale:
        log.warning(
            "batch %s revision %s changes the days processed after it; marked stale (re-run them "
            "oldest first): %s",
            batch_id,
            revision,
            [d.isoformat() for d in stale],
        )
    return "current"


def corrected_by(con: duckdb.DuckDBPyConnection, batch_id: str, revision: str) -> str | None:
    """The current revision that corrects `revision` (through `supersede`, possibly several
    times over), or None: a re-run that lands on corrected content keeps the correction."""
    seen = {revision}
    while True:
        found = con.execute(
            "SELECT e.revision, b.status FROM meta.batch_events AS e JOIN meta.batches AS b "
            "USING (batch_id, revision) WHERE e.batch_id = ? AND e.status = ? "
            "AND starts_with(e.detail, ?) ORDER BY e.recorded_at DESC LIMIT 1",
            [batch_id, CORRECTED, f"supersedes {revision}:"],
        ).fetchone()
        if found is None or found[0] in seen:
            return None
        revision, status = found
        if status == "current":
            return revision
        seen.add(revision)


def current_revisions(con: duckdb.DuckDBPyConnection, up_to: date) -> dict[str, str]:
    """batch_id → current revision for every batch up to a day: the lineage of a build."""
    ensure_meta(con)
    rows = con.execute(
        "SELECT batch_id, revision FROM meta.batches WHERE status = 'current' AND dt <= ? "
        "ORDER BY batch_id",
        [up_to],
    ).fetchall()
    return dict(rows)


def missing_batches(
    con: duckdb.DuckDBPyConnection, day: date, window_days: int, datasets: tuple[str, ...]
) -> list[str]:
    """Batch ids in the history window ending at `day` that have no current revision.

    The window starts at the later of `day - window_days + 1` and the first day any batch was
    registered, so a warehouse's first days are not flagged for history that never existed.
    A quarantined (or discarded, or not yet ingested) batch in the window is missing."""
    ensure_meta(con)
    first = con.execute("SELECT min(dt) FROM meta.batches").fetchone()[0]
    if first is None:
        return [f"{dataset}-{day.isoformat()}" for dataset in datasets]
    start = max(first, day - timedelta(days=window_days - 1))
    current = {
        (dataset, dt)
        for dataset, dt in con.execute(
            "SELECT DISTINCT dataset, dt FROM meta.batches "
            "WHERE status = 'current' AND dt BETWEEN ? AND ?",
            [start, day],
        ).fetchall()
    }
    missing = []
    for offset in range((day - start).days + 1):
        dt = start + timedelta(days=offset)
        missing += [f"{ds}-{dt.isoformat()}" for ds in datasets if (ds, dt) not in current]
    return missing


def _pick(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str | None, statuses: set[str]
) -> dict[str, Any]:
    """The named revision, or the batch's newest one in one of `statuses`."""
    if revision is not None:
        row = get(con, batch_id, revision)
        if row is None:
            raise LookupError(
                f"batch {batch_id} has no revision {revision}; see `mlpipeline batches show "
                f"{batch_id}`"
            )
    else:
        ensure_meta(con)
        found = con.execute(
            "SELECT revision FROM meta.batches WHERE batch_id = ? AND status IN "
            f"({', '.join('?' * len(statuses))}) ORDER BY created_at DESC LIMIT 1",
            [batch_id, *sorted(statuses)],
        ).fetchone()
        if found is None:
            raise LookupError(
                f"batch {batch_id} has no revision in status {sorted(statuses)}; see "
                f"`mlpipeline batches show {batch_id}`"
            )
        row = get(con, batch_id, found[0])
    assert row is not None
    if row["status"] not in statuses:
        raise ValueError(
            f"batch {batch_id} revision {row['revision']} is '{row['status']}'; only a revision "
            f"in {sorted(statuses)} can be changed this way"
        )
    return row


def was_released(con: duckdb.DuckDBPyConnection, batch_id: str, revision: str) -> bool:
    """True when an operator released this revision from quarantine (its checks are waived)."""
    ensure_meta(con)
    return bool(
        con.execute(
            "SELECT count(*) FROM meta.batch_events "
            "WHERE batch_id = ? AND revision = ? AND status = 'released'",
            [batch_id, revision],
        ).fetchone()[0]
    )


def release(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str | None, *, run_id: str | None
) -> dict[str, Any]:
    """Release a quarantined revision: it becomes current (released → current) and the days it
    affects (its own and every later processed day) are marked stale for a re-run in order.

    Only a revision whose rows were loaded (quarantined by the raw check) can be released; one
    rejected as a whole at the file level has no rows: fix the landed files instead."""
    row = _pick(con, batch_id, revision, {"quarantined"})
    if row["object_prefix"] is None:
        raise ValueError(
            f"batch {batch_id} revision {row['revision']} was rejected as a whole and has no rows "
            f"to release ({row['error']}). Fix the landed files and re-run the day: the new "
            "content becomes a new revision."
        )
    set_status(con, batch_id, row["revision"], "released", run_id=run_id, detail="by operator")
    promote(con, batch_id, row["revision"], run_id=run_id)
    days = mark_stale(con, row["dt"])
    return {"batch_id": batch_id, "revision": row["revision"], "stale_days": days}


def discard(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str | None, *, run_id: str | None
) -> dict[str, Any]:
    """Mark a revision that never became current as discarded: it will never be promoted."""
    row = _pick(con, batch_id, revision, {"quarantined", "ingested", "validated"})
    set_status(con, batch_id, row["revision"], "discarded", run_id=run_id, detail="by operator")
    return {"batch_id": batch_id, "revision": row["revision"], "status": "discarded"}


def _processed_after(con: duckdb.DuckDBPyConnection, day: date) -> list[date]:
    ensure_meta(con)
    rows = con.execute("SELECT day FROM meta.days WHERE day > ? ORDER BY day", [day]).fetchall()
    return [d for (d,) in rows]


def mark_stale(con: duckdb.DuckDBPyConnection, since: date) -> list[date]:
    """Mark `since` and every later processed day stale in `meta.days`; returns them in order."""
    days = sorted({since, *_processed_after(con, since)})
    for day in days:
        update_day(con, day, stale=True)
    return days


def stale_days(con: duckdb.DuckDBPyConnection) -> list[date]:
    """Days whose inputs changed since they were processed, oldest first."""
    return [
        d for (d,) in con.execute("SELECT day FROM meta.days WHERE stale ORDER BY day").fetchall()
    ]


@dataclass
class PreparedRevision:
    """What `prepare_revision` wrote aside; small enough to pass between tasks."""

    dataset: str
    day: str
    batch_id: str
    revision: str
    content_checksum: str
    source_objects: list[dict[str, Any]]
    rows_declared: int
    rows_read: int
    rows_written: int
    rows_rejected: int
    object_key: str | None
    rejects_key: str | None
    error: dict[str, str] | None = None
    already_ingested: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
