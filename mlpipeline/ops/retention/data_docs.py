"""Data Docs validation results and pages, in the local site folder and under
`reports/data_docs/` in the object store.

A result (GX JSON) and its page go once the run that made them is older than the age, except
the newest result of each suite and subject (the latest state of every checked dataset stays
browsable). The index is then rebuilt from what is left and published, so it links no deleted
page.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from mlpipeline.ops.retention.report import Report, utc
from mlpipeline.quality import DataDocs

log = logging.getLogger(__name__)

RUN_TIME = "%Y%m%dT%H%M%S.%fZ"  # how GX writes a run time into a result's key


def _run_time(key: tuple[str, ...]) -> datetime | None:
    try:
        return datetime.strptime(key[-2], RUN_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def clean_data_docs(docs: DataDocs, *, now: datetime, max_age: timedelta, dry_run: bool) -> Report:
    """Delete old validation results and pages (keeping the newest per suite and subject) and
    rebuild the index."""
    report = Report("data_docs", utc(now), max_age, dry_run)
    groups: dict[tuple[tuple[str, ...], str], list[tuple[str, ...]]] = defaultdict(list)
    for key in docs.results():
        # GX key: (*suite name parts, run name, run time, batch identifier)
        groups[(key[:-3], key[-1])].append(key)
    doomed = []
    for (_, _), keys in sorted(groups.items()):
        keys.sort(key=lambda k: k[-2])
        *older, newest = keys
        report.keep("/".join(newest), "newest result of its suite and subject")
        for key in older:
            run_time = _run_time(key)
            if run_time is None:
                report.keep("/".join(key), "run time not readable: left alone")
            elif run_time >= report.older_than:
                report.keep("/".join(key), "run within the age")
            else:
                doomed.append(key)
    for key in doomed:
        report.delete("/".join(key))
    if doomed and not dry_run:
        files = docs.delete_results(doomed)
        docs.rebuild_index()
        log.info(
            "retention data_docs: deleted %d results (%d files); index rebuilt", len(doomed), files
        )
    return report
