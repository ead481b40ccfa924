"""The warehouse's DuckLake upkeep: small files merged, old snapshots expired, their files gone.

Every commit to the warehouse is a DuckLake snapshot that time travel can read back
(`FROM marts.training_set AT (VERSION => id)`), and every small write adds a small file. Daily:
snapshots older than the age are expired, except the current one and every snapshot a
registered model version was trained from (its `warehouse_snapshot` tag: its training set can
be rebuilt as it was); the files DuckLake lists as no longer referenced are deleted, and files
under the data path that no commit wrote (a writer that died) once they are older than the age
(younger ones may be about to be committed); then inlined rows are flushed into Parquet and
adjacent small files merged. DuckLake deletes only under its data path.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import duckdb

from mlpipeline.ops.retention.report import Report, utc
from mlpipeline.training import model_registry
from mlpipeline.warehouse import lake

log = logging.getLogger(__name__)


def recorded_snapshots(tracking_uri: str) -> dict[int, str]:
    """snapshot id -> the registered model versions trained from it."""
    client = model_registry.client(tracking_uri)
    needed: dict[int, str] = {}
    name = model_registry.MODEL_NAME
    for version in client.search_model_versions(f"name = '{name}'"):
        snapshot = version.tags.get(model_registry.SNAPSHOT_TAG)
        if snapshot:
            needed[int(snapshot)] = f"training set of {name} version {version.version}"
    return needed


def _call(con: duckdb.DuckDBPyConnection, procedure: str, **named: object) -> list[tuple]:
    arguments = "".join(f", {key} => {value}" for key, value in named.items())
    return con.execute(f"CALL {procedure}('{lake.ALIAS}'{arguments})").fetchall()


def maintain(
    con: duckdb.DuckDBPyConnection,
    tracking_uri: str,
    *,
    now: datetime,
    max_age: timedelta,
    dry_run: bool,
) -> Report:
    """Expire the snapshots no one needs, delete the files they held, then compact."""
    report = Report("warehouse_snapshots", utc(now), max_age, dry_run)
    needed = recorded_snapshots(tracking_uri)
    current = lake.snapshot_id(con)
    doomed = []
    for snapshot, committed in con.execute(
        f"SELECT snapshot_id, snapshot_time FROM ducklake_snapshots('{lake.ALIAS}') ORDER BY 1"
    ).fetchall():
        item = f"snapshot {snapshot}"
        if snapshot == current:
            report.keep(item, "the current snapshot")
        elif snapshot in needed:
            report.keep(item, needed[snapshot])
        elif utc(committed) >= report.older_than:
            report.keep(item, "committed within the age")
        else:
            doomed.append(snapshot)
            report.delete(item)
    if dry_run:
        return report
    if doomed:
        _call(con, "ducklake_expire_snapshots", versions=f"{doomed}")
    unreferenced = _call(con, "ducklake_cleanup_old_files", cleanup_all="true")
    orphaned = _call(
        con,
        "ducklake_delete_orphaned_files",
        older_than=f"TIMESTAMPTZ '{report.older_than.isoformat()}'",
    )
    # Compaction last: the files it replaces stay as long as the snapshots that read them.
    _call(con, "ducklake_flush_inlined_data")
    merged = _call(con, "ducklake_merge_adjacent_files")
    log.info(
        "warehouse: %d snapshots expired, %d files no snapshot needs and %d files no commit "
        "wrote deleted, %d small files merged",
        len(doomed),
        len(unreferenced),
        len(orphaned),
        sum(row[2] for row in merged),
    )
    return report
