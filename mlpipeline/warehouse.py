"""Short-lived connections to the one DuckDB warehouse file.

DuckDB lets one process hold the file read-write and locks every other process out, readers
included. Airflow serialises openers through the single-slot `warehouse` pool; this module keeps
each connection short and retries while another process holds the lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from mlpipeline.config import Settings

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "staging", "features", "marts", "scores", "meta")


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
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting (with backoff) while another process holds its lock."""
    settings = settings or Settings.from_env()
    db_path = Path(path or settings.duckdb_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            con = duckdb.connect(str(db_path), read_only=read_only)
            break
        except duckdb.IOException as exc:
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
        yield con
    finally:
        con.close()


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
