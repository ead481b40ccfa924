"""Snapshot keys in Redis other than the current, previous and pinned ones.

The switch already retires the snapshot two switches back and purges it; this catches what it
leaves: exports staged but never switched (a failed verify, an older cutoff, a run that stopped)
and purges a crash interrupted. Such an export goes once its staging is older than the age
(younger ones may be in flight); a retired one goes at once. The current, previous, pinned and
pin-pending exports are never touched (checked again right before each deletion).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis

from mlpipeline import online
from mlpipeline.features.export import export_time
from mlpipeline.features.wire_format import ExportError
from mlpipeline.ops.retention.report import Report, deletions, utc

log = logging.getLogger(__name__)

_TIMES = ("verified_at", "staged_at", "staging_started_at")


def _staged_at(export_id: str, record: dict[str, str]) -> datetime | None:
    """The export's last staging step, else its creation time (from its id)."""
    times = [
        datetime.fromisoformat(record[f].replace("Z", "+00:00")) for f in _TIMES if record.get(f)
    ]
    if times:
        return max(times)
    try:
        return export_time(export_id)
    except ExportError:
        return None


def clean_redis_snapshots(
    client: redis.Redis | str, *, now: datetime, max_age: timedelta, dry_run: bool
) -> Report:
    """Delete staged or retired snapshots' keys; never the current, previous or pinned one."""
    report = Report("redis_snapshots", utc(now), max_age, dry_run)
    client = online.as_client(client)
    protected = online.protected_exports(client)
    retired = online.retired_exports(client)
    exports = online.snapshot_exports(client)
    doomed = []
    for export_id in sorted(set(exports) | retired):
        record = exports.get(export_id, {})
        staged_at = _staged_at(export_id, record)
        if export_id in protected:
            report.keep(export_id, protected[export_id])
        elif export_id in retired:
            doomed.append((export_id, "retired by a switch"))
        elif staged_at is None:
            report.keep(export_id, "no staging time: left alone")
        elif staged_at >= report.older_than:
            report.keep(export_id, f"{record.get('status') or 'staged'} within the age")
        else:
            doomed.append(
                (export_id, f"{record.get('status') or 'index only'}, staged {staged_at}")
            )
    progress = deletions(report, len(doomed))
    for export_id, why in doomed:
        rows = int(exports.get(export_id, {}).get("row_count") or 0)
        if dry_run:
            report.delete(export_id, why=why, keys=rows)
            continue
        report.delete(export_id, why=why, keys=online.delete_snapshot(client, export_id))
        progress.add()
    return report
