"""Snapshot exports in the object store (`features/customer_snapshot/cutoff=/export=/`).

Kept whatever their age: the export online now, the previous one (the rollback target), a
pinned one and a pin's pending one, as Redis records them. Within the age: the newest complete
export of each cutoff, and unfinished folders (an export may be being written). Everything else
goes: older exports, and within the age the exports a newer one of the same cutoff replaced.
An export's age is its creation time, read from its id.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

import redis

from mlpipeline import online
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.features.export import EXPORT_ROOT, MANIFEST_NAME, export_time
from mlpipeline.features.wire_format import ExportError
from mlpipeline.ops.retention.report import Report, delete_folders, utc
from mlpipeline.ops.retention.request_log import unreplayed_exports

log = logging.getLogger(__name__)

_ROOT = f"{EXPORT_ROOT}/cutoff="


def _folders(store: ObjectStore) -> dict[str, list[str]]:
    """Export folder prefix -> its keys."""
    folders: dict[str, list[str]] = defaultdict(list)
    for key in store.list(_ROOT):
        parts = key[len(EXPORT_ROOT) + 1 :].split("/")
        if len(parts) > 2 and parts[1].startswith("export="):
            folders[f"{EXPORT_ROOT}/{parts[0]}/{parts[1]}/"].append(key)
    return folders


def _export_id(prefix: str) -> str:
    return prefix.rstrip("/").rsplit("/", 1)[-1].removeprefix("export=")


def _cutoff(prefix: str) -> str:
    return prefix[len(EXPORT_ROOT) + 1 :].split("/")[0].removeprefix("cutoff=")


def clean_exports(
    store: ObjectStore,
    client: redis.Redis | str,
    *,
    now: datetime,
    max_age: timedelta,
    dry_run: bool,
) -> Report:
    """Delete old and replaced snapshot exports; never the current, previous or pinned one,
    nor one that unreplayed requests were served from."""
    report = Report("exports", utc(now), max_age, dry_run)
    protected = online.protected_exports(client)
    served = unreplayed_exports(store)
    folders = _folders(store)
    complete = [p for p, keys in folders.items() if p + MANIFEST_NAME in keys]
    newest: dict[str, str] = {}
    for prefix in sorted(complete, key=_export_id):  # ids sort by creation time
        newest[_cutoff(prefix)] = prefix
    doomed = []
    for prefix in sorted(folders):
        export_id = _export_id(prefix)
        try:
            recent = export_time(export_id) >= report.older_than
        except ExportError:
            report.keep(prefix, "not an export id: left alone")
            continue
        if export_id in protected:
            report.keep(prefix, f"online: {protected[export_id]}")
        elif export_id in served:
            report.keep(prefix, "served requests not replayed yet (request log)")
            log.info(
                "retention exports: %s kept: it served the unreplayed requests of %s",
                prefix,
                ", ".join(map(str, served[export_id])),
            )
        elif recent and newest.get(_cutoff(prefix)) == prefix:
            report.keep(prefix, "newest export of its cutoff within the age")
        elif recent and prefix not in complete:
            report.keep(prefix, "unfinished within the age: may be being written")
        else:
            doomed.append(prefix)
    delete_folders(store, report, {p: folders[p] for p in doomed}, MANIFEST_NAME)
    return report
