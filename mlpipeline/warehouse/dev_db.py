"""The analysts' dev warehouse: a DuckLake of their own where dbt's `dev` target writes, with the
pipeline's warehouse attached read-only, where the sources (the raw layer) are read.

Nothing is copied: dev builds read the current raw revisions in place, and cannot write to
production (its catalog is attached read-only; in a shared deployment through a reader role,
`WAREHOUSE_READER_CATALOG`). `DEV_WAREHOUSE_CATALOG` and `DEV_WAREHOUSE_DATA_PATH` name the dev
lake, by default `dev.sqlite` and `dev-warehouse/` in the data folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mlpipeline.core.config import Settings
from mlpipeline.warehouse import duckdb_extensions, lake, meta

log = logging.getLogger(__name__)

# What dbt's dev target and `connect_dev` call the analyst's lake (production's is `lake`).
DEV_ALIAS = "dev"


def dev_settings(settings: Settings) -> Settings:
    """The settings with the analyst's lake as the warehouse."""
    catalog = settings.dev_warehouse_catalog
    data_path = settings.dev_warehouse_data_path
    return settings.model_copy(
        update={
            "warehouse_catalog": catalog
            or f"sqlite:{(settings.data_dir / 'dev.sqlite').resolve()}",
            "warehouse_data_path": data_path
            or f"{(settings.data_dir / 'dev-warehouse').resolve()}/",
        }
    )


def reader_catalog(settings: Settings) -> str:
    """Production's catalog as dev reads it: a read-only role's, when the deployment has one."""
    return settings.warehouse_reader_catalog or settings.warehouse_catalog


def create_dev(settings: Settings | None = None) -> str:
    """Make the analyst's lake (nothing when made); returns where it is."""
    dev = dev_settings(settings or Settings.from_env())
    for target in (dev.warehouse_catalog, dev.warehouse_data_path):
        if target.startswith("sqlite:"):
            Path(target.removeprefix("sqlite:")).parent.mkdir(parents=True, exist_ok=True)
        elif "://" not in target:
            Path(target).mkdir(parents=True, exist_ok=True)
    with lake.connect(dev.warehouse_catalog, dev.warehouse_data_path) as con:
        # The registry claims the incremental models' pre-hooks take live in `meta`.
        meta.ensure_meta(con)
    log.info("dev warehouse ready: %s", dev.warehouse_catalog)
    return dev.warehouse_catalog


@contextmanager
def connect_dev(
    settings: Settings | None = None, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The dev lake as `dev` (the default database; `read_only` for queries) with production
    read-only as `lake`: what the dev target's SQL runs against."""
    settings = settings or Settings.from_env()
    dev = dev_settings(settings)
    con = duckdb.connect(config=duckdb_extensions.config())
    try:
        con.execute("SET TimeZone = 'UTC'")
        lake.attach(
            con, reader_catalog(settings), settings.warehouse_data_path, read_only=True,
            create=False,
        )  # fmt: skip
        lake.attach(
            con,
            dev.warehouse_catalog,
            dev.warehouse_data_path,
            read_only=read_only,
            create=False,
            alias=DEV_ALIAS,
        )
        yield con
    finally:
        con.close()
