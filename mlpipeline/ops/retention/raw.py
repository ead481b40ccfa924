"""Raw revisions no reader needs any more: rows in `raw.<dataset>` and files in the object store.

Deleted once older than the age (counted from their last status change): superseded and
discarded revisions, and ingested / validated ones that never became current while a newer
revision of the batch did (a run that stopped before its promote). Kept whatever their age: the
current revision of every batch, quarantined ones (awaiting release or discard) and anything
not yet promoted without a newer current revision (a re-run may still promote it). A deleted
revision stays in `meta.batches` with status `purged` (its history in `meta.batch_events`), so
its lineage is still readable.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import duckdb

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ingest import batches
from mlpipeline.ops.retention.report import Report, deletions, utc
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.raw_tables import DATASET_COLUMNS, ensure_raw

log = logging.getLogger(__name__)

PURGED = "purged"
_KEPT = {
    "current": "current revision of its batch",
    "quarantined": "quarantined: awaiting release or discard",
    "released": "released: becoming current",
}
_RETIRED = {"superseded", "discarded"}
_UNPROMOTED = {"ingested", "validated"}


def _plan(con: duckdb.DuckDBPyConnection, report: Report) -> list[tuple]:
    rows = con.execute(
        """
        SELECT b.batch_id, b.revision, b.dataset, b.status, b.object_prefix, b.updated_at,
               b.created_at < c.created_at AS newer_is_current
        FROM meta.batches AS b
        LEFT JOIN (
            SELECT batch_id, max(created_at) AS created_at FROM meta.batches
            WHERE status = 'current' GROUP BY batch_id
        ) AS c USING (batch_id)
        WHERE b.status <> ?
        ORDER BY b.dt, b.batch_id, b.created_at
        """,
        [PURGED],
    ).fetchall()
    doomed = []
    for batch_id, revision, dataset, status, prefix, updated_at, newer_is_current in rows:
        item = f"{batch_id}@{revision}"
        old = utc(updated_at) < report.older_than
        if dataset not in DATASET_COLUMNS:
            report.keep(item, f"unknown dataset {dataset!r}: left alone")
        elif status in _KEPT:
            report.keep(item, _KEPT[status])
        elif status in _RETIRED and not old:
            report.keep(item, f"{status} within the age")
        elif status in _UNPROMOTED and not (old and newer_is_current):
            report.keep(item, f"{status}, not promoted yet: a re-run may still promote it")
        elif status in _RETIRED | _UNPROMOTED:
            doomed.append((batch_id, revision, dataset, status, prefix))
        else:
            report.keep(item, f"unknown status {status!r}: left alone")
    return doomed


def clean_raw_revisions(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStore,
    *,
    now: datetime,
    max_age: timedelta,
    dry_run: bool,
) -> Report:
    """Delete old superseded / discarded / never-promoted revisions' rows and files."""
    report = Report("raw_revisions", utc(now), max_age, dry_run)
    ensure_raw(con)
    doomed = _plan(con, report)
    progress = deletions(report, len(doomed))
    for batch_id, revision, dataset, status, prefix in doomed:
        rows = con.execute(
            f"SELECT count(*) FROM raw.{dataset} WHERE batch_id = ? AND revision = ?",
            [batch_id, revision],
        ).fetchone()[0]
        keys = store.list(prefix) if prefix else []
        report.delete(f"{batch_id}@{revision}", status=status, rows=rows, files=len(keys))
        if dry_run:
            continue
        # Files first: a crash in between leaves the revision registered and a re-run
        # finishes it; the status flips only with the rows, in one transaction.
        for key in keys:
            store.delete(key)

        def purge(
            c: duckdb.DuckDBPyConnection,
            dataset: str = dataset,
            batch_id: str = batch_id,
            revision: str = revision,
            detail: str = f"{status}; {rows} rows and {len(keys)} files deleted",
        ) -> None:
            c.execute(
                f"DELETE FROM raw.{dataset} WHERE batch_id = ? AND revision = ?",
                [batch_id, revision],
            )
            batches.set_status(c, batch_id, revision, PURGED, run_id="retention", detail=detail)

        lake.run_unit(con, f"purge of {batch_id} revision {revision}", purge)
        progress.add()
    return report
