"""Short-lived connections to the one DuckDB warehouse file.

DuckDB lets one process hold the file read-write and locks every other process out, readers
included. Airflow serialises openers through the single-slot `warehouse` pool; this module keeps
each connection short and retries while another process holds the lock.

Only setup (`create`) makes a warehouse. Every other opener requires the one setup made: a worker
that cannot see it (a volume not mounted, a wrong DUCKDB_PATH) fails naming the path, instead of
quietly writing to a new, empty file of its own. And where the orchestrator says which tasks
declared the warehouse (ACCESS_VAR, set per task by the Airflow plugin), an undeclared task that
opens it fails, so no opener can be forgotten outside the pool.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import duckdb

from mlpipeline import warehouse_migrate
from mlpipeline.config import Settings

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "staging", "features", "marts", "scores", "meta")

# Written by `create` only: a file without it was not made by setup.
MARKER_TABLE = "meta.warehouse"

# Set by the orchestrator for each task it runs: "declared" when the task declared the warehouse
# (Airflow: the `warehouse` pool), otherwise the task's name. Unset outside orchestrated tasks.
ACCESS_VAR = "MLPIPELINE_WAREHOUSE_ACCESS"
DECLARED = "declared"


class WarehouseMissing(RuntimeError):
    """No warehouse made by setup where the settings point: this process cannot see it."""


class UndeclaredWarehouseAccess(RuntimeError):
    """A task opened the warehouse without declaring it to the orchestrator."""


def _check_declared(db_path: Path) -> None:
    access = os.environ.get(ACCESS_VAR)
    if access is not None and access != DECLARED:
        raise UndeclaredWarehouseAccess(
            f"task {access} opened the warehouse {db_path} without declaring it: give the task "
            "pool='warehouse' in its DAG (every opener of the DuckDB file runs in that pool)"
        )


def _missing(db_path: Path, why: str) -> WarehouseMissing:
    return WarehouseMissing(
        f"no warehouse at {db_path} ({why}). This process cannot see the warehouse setup "
        "created: on a worker, mount the warehouse volume there (docker-compose: warehouse-data "
        "at /data/mlpipeline) or point DUCKDB_PATH at it; on a new installation, run setup "
        "first (`mlpipeline warehouse init`, done by airflow-init and `make demo`)."
    )


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


@contextmanager
def connect(
    settings: Settings | None = None,
    *,
    read_only: bool = False,
    path: Path | None = None,
    wait_seconds: float = 300.0,
    create: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse setup created (`create=True` is setup's own call), waiting with
    backoff while another process holds its lock."""
    settings = settings or Settings.from_env()
    db_path = Path(path or settings.duckdb_path)
    _check_declared(db_path)
    if create:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    elif not db_path.is_file():
        raise _missing(db_path, "the file does not exist")
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            con = duckdb.connect(str(db_path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if warehouse_migrate.is_newer_storage(exc):
                raise warehouse_migrate.needs_migration(db_path, exc) from exc
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot open the warehouse {db_path}: {exc}. Another process holds it; "
                    "run DuckDB openers through the single-slot 'warehouse' pool."
                ) from exc
            log.info("warehouse %s is locked by another process; retrying in %.1fs", db_path, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not create and not _has_marker(con):
            raise _missing(db_path, f"the file exists but has no {MARKER_TABLE}: setup never ran")
        yield con
    finally:
        con.close()


def _has_marker(con: duckdb.DuckDBPyConnection) -> bool:
    schema, table = MARKER_TABLE.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def create(settings: Settings | None = None, *, path: Path | None = None) -> Path:
    """Setup: make the warehouse (schemas and the marker openers look for), or adopt an existing
    one made before the marker existed. Safe to run on every start."""
    settings = settings or Settings.from_env()
    db_path = Path(path or settings.duckdb_path)
    with connect(settings, path=db_path, create=True) as con:
        ensure_schemas(con)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (created_at TIMESTAMPTZ, path VARCHAR)"
        )
        if not con.execute(f"SELECT count(*) FROM {MARKER_TABLE}").fetchone()[0]:
            con.execute(f"INSERT INTO {MARKER_TABLE} VALUES (now(), ?)", [str(db_path)])
    log.info("warehouse ready at %s", db_path)
    return db_path


def require(settings: Settings | None = None) -> None:
    """Fail unless the warehouse setup made is visible here: what a task runs before a tool
    (dbt) that would otherwise create an empty file where the warehouse should be."""
    with connect(settings, read_only=True):
        pass


def query_csv(
    sql: str, out: TextIO, settings: Settings | None = None, *, rows: int = 10_000
) -> int:
    """Run one read-only query and write its result to `out` as CSV with a header line,
    streamed `rows` at a time (an analyst's way in that holds no result in memory). Returns the
    number of data rows; a query that writes fails (the connection is read-only)."""
    with connect(settings, read_only=True) as con:
        cursor = con.cursor()
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
