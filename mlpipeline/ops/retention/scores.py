"""Old versions of the score table (the Delta table at `scores/transaction_scores/`).

A Delta VACUUM deletes the data files that no version within the age references any more,
nor the last version before it (so the table can still be read as of any instant within the
age); the current version is never touched. Only files a commit removed (a re-scored day's old
files) are candidates: files not yet committed (a scoring run in flight) are not. Versions
older than that cannot be read afterwards. Expired log entries go with `cleanup_metadata`, by
the table's own `delta.logRetentionDuration` (30 days by default) and only up to its last
checkpoint.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ops.retention.report import Report, utc
from mlpipeline.scoring.score_table import SCORE_TABLE_KEY, DeltaLocation, score_table_location

log = logging.getLogger(__name__)


def versions_to_keep(location: DeltaLocation, current: int, older_than: datetime) -> list[int]:
    """The table's state at `older_than` (the last version committed by then, or version 0)
    and every version since, up to the current one."""
    as_of = DeltaTable(location.uri, storage_options=location.storage_options)
    # Delta resolves a time by its log files' modification times, which S3 keeps to the
    # second: a second earlier keeps the version committed just before `older_than`.
    as_of.load_as_version(older_than - timedelta(seconds=1))
    return list(range(as_of.version(), current + 1))


def _relative(path: str) -> str:
    """A vacuum candidate as a path inside the table (delta-rs lists some absolute)."""
    marker = SCORE_TABLE_KEY + "/"
    return path.rsplit(marker, 1)[-1] if marker in path else path


def vacuum_score_table(
    store: ObjectStore, *, now: datetime, max_age: timedelta, dry_run: bool
) -> Report:
    """Vacuum the score table's files that no version within the age needs."""
    report = Report("score_versions", utc(now), max_age, dry_run)
    location = score_table_location(store)
    try:
        table = DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        report.keep(location.uri, "no score table yet")
        return report
    keep = versions_to_keep(location, table.version(), report.older_than)
    report.keep(f"version {table.version()}", "current version of the score table")
    for version in keep[:-1]:
        report.keep(f"version {version}", "readable: within the age (or its start)")
    # Retention 0 with the versions to keep: the age is applied through `keep`, to the second,
    # whatever the wall clock (delta-rs counts whole hours back from now).
    options = {"retention_hours": 0, "enforce_retention_duration": False, "keep_versions": keep}
    candidates = {_relative(path) for path in table.vacuum(dry_run=True, **options)}
    # The log keeps listing tombstones whose files are gone: only present files are deleted,
    # so a second run finds nothing and commits nothing.
    present = {key.removeprefix(SCORE_TABLE_KEY + "/") for key in store.list(SCORE_TABLE_KEY + "/")}
    files = sorted(candidates & present)
    for path in files:
        report.delete(path)
    if files and not dry_run:
        table.vacuum(dry_run=False, **options)
        table.cleanup_metadata()
        log.info("retention score_versions: vacuumed %d files of %s", len(files), location.uri)
    return report
