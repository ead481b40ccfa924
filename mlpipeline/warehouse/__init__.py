"""Connections to the warehouse: a DuckLake that every process and host shares.

The catalog lives in a SQL database (`WAREHOUSE_CATALOG`: a SQLite file on one machine,
PostgreSQL in the stack) and the data as Parquet files under `WAREHOUSE_DATA_PATH` (a folder, or
an S3 prefix). Any number of processes attach it at once, readers and writers, each seeing one
committed snapshot; a writer whose commit conflicts with another's is rolled back whole
(`mlpipeline.warehouse.lake.run_unit` runs such units again).

Only setup (`create`) makes a warehouse. Every other opener requires the one setup made: a
process pointed at the wrong catalog fails naming it instead of quietly writing to a new, empty
warehouse of its own. And where the orchestrator says which tasks declared the warehouse
(ACCESS_VAR, set per task by the Airflow plugin), an undeclared task that opens it fails.

"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import duckdb

from mlpipeline.core.config import WAREHOUSE_ACCESS_VAR, Settings, warehouse_access
from mlpipeline.warehouse import duckdb_extensions, lake
from mlpipeline.warehouse.meta import ensure_meta

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "staging", "features", "marts", "scores", "meta")

# Written by `create` only: a file without it was not made by setup.
MARKER_TABLE = "meta.warehouse"

# Set by the orchestrator for each task it runs: "declared" when the task declared the warehouse
# (Airflow: the `warehouse` pool), otherwise the task's name. Unset outside orchestrated tasks.
ACCESS_VAR = WAREHOUSE_ACCESS_VAR
DECLARED = "declared"


class WarehouseMissing(RuntimeError):
    """No warehouse made by setup where the settings point: this process cannot see it."""


class UndeclaredWarehouseAccess(RuntimeError):
    """A task opened the warehouse without declaring it to the orchestrator."""


def _check_declared(where: str) -> None:
    access = warehouse_access()
    if access is not None and access != DECLARED:
        raise UndeclaredWarehouseAccess(
            f"task {access} opened the warehouse {where} without declaring it: give the task "
            "pool='warehouse' in its DAG (every opener of the warehouse runs in that pool)"
        )


def describe(settings: Settings) -> str:
    """The warehouse as messages name it: catalog and data path, without a password."""
    catalog = re.sub(r"(password=)\S+", r"\1***", settings.warehouse_catalog)
    catalog = re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", catalog)
    return f"DuckLake {catalog} (data {settings.warehouse_data_path})"


def _missing(settings: Settings, why: str) -> WarehouseMissing:
    old = settings.duckdb_path
    upgrade = (
        f" An earlier release's warehouse file is at {old}: `mlpipeline warehouse migrate` "
        "copies it into the lake."
        if old.is_file()
        else ""
    )
    return WarehouseMissing(
        f"no warehouse at {describe(settings)} ({why}). This process cannot see the warehouse "
        "setup created: point WAREHOUSE_CATALOG and WAREHOUSE_DATA_PATH at it (docker-compose "
        "sets them for every service); on a new installation, run setup first (`mlpipeline "
        f"warehouse init`, done by airflow-init and `make demo`).{upgrade}"
    )


def _catalog_file(catalog: str) -> Path | None:
    """The file of a SQLite catalog (None for a server catalog)."""
    kind, _, target = catalog.partition(":")
    return Path(target) if kind == "sqlite" else None


@contextmanager
def connect(
    settings: Settings | None = None,
    *,
    read_only: bool = False,
    create: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Attach the warehouse setup created (`create=True` is setup's own call) as the
    connection's default database."""
    settings = settings or Settings.from_env()
    where = describe(settings)
    _check_declared(where)
    catalog_file = _catalog_file(settings.warehouse_catalog)
    if create:
        if catalog_file is not None:
            catalog_file.parent.mkdir(parents=True, exist_ok=True)
        if "://" not in settings.warehouse_data_path:
            Path(settings.warehouse_data_path).mkdir(parents=True, exist_ok=True)
    elif catalog_file is not None and not catalog_file.is_file():
        raise _missing(settings, "the catalog file does not exist")
    con = duckdb.connect(config=duckdb_extensions.config())
    try:
        try:
            lake.attach(
                con,
                settings.warehouse_catalog,
                settings.warehouse_data_path,
                read_only=read_only,
                create=create,
            )
        except duckdb.Error as exc:
            raise _missing(settings, f"cannot attach it: {str(exc).splitlines()[0]}") from exc
        con.execute("SET TimeZone = 'UTC'")
        if not create and not _has_marker(con):
            raise _missing(settings, f"the catalog has no {MARKER_TABLE}: setup never ran")
        yield con
    finally:
        con.close()


def _has_marker(con: duckdb.DuckDBPyConnection) -> bool:
    schema, table = MARKER_TABLE.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(found and found[0][0])


def create(settings: Settings | None = None) -> str:
    """Setup: make the warehouse (schemas and the marker openers look for), or adopt the one
    already there. Safe to run on every start, from several hosts at once."""
    settings = settings or Settings.from_env()
    where = describe(settings)

    def unit(con: duckdb.DuckDBPyConnection) -> None:
        ensure_schemas(con)
        ensure_meta(con)  # the registries, before the first two tasks that write them at once
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (created_at TIMESTAMPTZ, path VARCHAR)"
        )
        if not con.execute(f"SELECT count(*) FROM {MARKER_TABLE}").fetchall()[0][0]:
            con.execute(f"INSERT INTO {MARKER_TABLE} VALUES (now(), ?)", [where])

    with connect(settings, create=True) as con:
        lake.run_unit(con, "warehouse setup", unit)
    log.info("warehouse ready: %s", where)
    return where


def require(settings: Settings | None = None) -> None:
    """Fail unless the warehouse setup made is visible here: what a task runs before a tool
    (dbt) that would otherwise create an empty file where the warehouse should be."""
    with connect(settings, read_only=True):
        pass


def query_csv(
    sql: str,
    out: TextIO,
    settings: Settings | None = None,
    *,
    rows: int = 10_000,
    dev: bool = False,
) -> int:
    """Run one read-only query and write its result to `out` as CSV with a header line,
    streamed `rows` at a time (an analyst's way in that holds no result in memory). Returns the
    number of data rows; a query that writes fails (the connection is read-only). With `dev`,
    it runs on the analyst's dev lake (production beside it as `lake`, read-only)."""
    from mlpipeline.warehouse.dev_db import DEV_ALIAS, connect_dev

    opened = connect_dev(settings, read_only=True) if dev else connect(settings, read_only=True)
    with opened as con:
        cursor = lake.cursor(con, DEV_ALIAS if dev else lake.ALIAS)
        cursor.execute(sql)
        if cursor.description is None:
            raise ValueError(f"the statement returned no result set: {sql!r}")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([column[0] for column in cursor.description])
        written = 0
        while batch := cursor.fetchmany(rows):
            writer.writerows(batch)
            written += len(batch)
        return written


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def tables_of(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """Re-cut a DuckDB Arrow reader's batches (at most one row group, 122,880 rows, each) into
    tables of exactly `rows` rows, the last one shorter: fixed-size work units for whoever
    streams a query (model calls, Parquet row groups) without holding the result."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        while size >= rows:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, size = rest.to_batches(), rest.num_rows
    if size:
        yield pa.Table.from_batches(pending, schema=reader.schema)
