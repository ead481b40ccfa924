"""The analysts' dev warehouse: a copy of the current raw revisions in its own DuckDB file, so
`dbt build` from `dbt_project/` (dev target) never locks or changes the file the nightly uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from mlpipeline.config import Settings
from mlpipeline.warehouse import connect
from mlpipeline.warehouse_migrate import is_newer_storage

log = logging.getLogger(__name__)

COPIED = ("meta.batches", "raw.transactions", "raw.chargebacks")


def dev_path(settings: Settings) -> Path:
    """Where the dbt `dev` target writes (the same rule as mlpipeline.transform)."""
    override = os.environ.get("DBT_DEV_DUCKDB_PATH")
    return Path(override).resolve() if override else settings.data_dir / "dev.duckdb"


def fill_dev_db(settings: Settings | None = None) -> dict[str, int]:
    """Replace the dev file's raw layer with the current revisions of the prod warehouse."""
    from mlpipeline.raw_tables import ensure_raw

    settings = settings or Settings.from_env()
    target = dev_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with connect(settings, read_only=True) as prod:
        frames = {
            table: prod.execute(
                f"SELECT * FROM {table}"
                + (" WHERE status = 'current'" if table == "meta.batches" else "")
            ).to_arrow_table()
            for table in COPIED
        }
    try:
        dev = duckdb.connect(str(target))
    except duckdb.IOException as exc:
        if not is_newer_storage(exc):
            raise
        # A copy written by the DuckDB of an earlier release: rebuilt, never migrated.
        log.warning("dev warehouse %s was written by another DuckDB: replacing it", target)
        target.unlink()
        target.with_name(target.name + ".wal").unlink(missing_ok=True)
        dev = duckdb.connect(str(target))
    try:
        ensure_raw(dev)
        dev.execute("BEGIN TRANSACTION")
        for table, frame in frames.items():
            dev.execute(f"DELETE FROM {table}")
            dev.register("incoming", frame)
            dev.execute(f"INSERT INTO {table} SELECT * FROM incoming")
            dev.unregister("incoming")
            counts[table] = frame.num_rows
        dev.execute("COMMIT")
    finally:
        dev.close()
    log.info("dev warehouse %s filled: %s", target, counts)
    return counts
