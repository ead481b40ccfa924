"""A DuckLake: the catalog in a SQL database, the data as Parquet files under a path, written by
many DuckDB processes at once with snapshot isolation.

A writer's commit can lose a race: DuckLake aborts it when another writer committed a
conflicting change first (both deleted from the same data file: the same incremental day, the
same registry row), and a SQLite catalog refuses a commit while another one holds its lock.
Neither leaves a partial change, so the caller's unit of work, idempotent by design, is simply
run again: `run_unit` does that, logging why.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import duckdb

from mlpipeline import duckdb_extensions

log = logging.getLogger(__name__)

T = TypeVar("T")

ALIAS = "lake"
# Messages of errors after which a rolled-back unit may run again.
RETRYABLE = ("database is locked", "Transaction conflict", "Failed to commit DuckLake")


def _catalog_extension(catalog: str) -> str:
    kind = catalog.split(":", 1)[0]
    if kind not in {"sqlite", "postgres"}:
        raise ValueError(
            f"DuckLake catalog {catalog!r}: expected 'sqlite:<file>' or 'postgres:<libpq "
            "connection string>'"
        )
    return kind


def attach(
    con: duckdb.DuckDBPyConnection, catalog: str, data_path: str, *, read_only: bool = False
) -> None:
    """Attach the lake as `lake` and make it the default database of `con`."""
    needed = ["ducklake", _catalog_extension(catalog)]
    if data_path.startswith("s3://"):
        needed.append("httpfs")
    duckdb_extensions.load(con, *needed)
    options = f"DATA_PATH '{data_path}'" + (", READ_ONLY" if read_only else "")
    con.execute(f"ATTACH 'ducklake:{catalog}' AS {ALIAS} ({options})")
    con.execute(f"USE {ALIAS}")


@contextmanager
def connect(
    catalog: str, data_path: str, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the lake; many processes may hold one at the same time."""
    con = duckdb.connect(config=duckdb_extensions.config())
    try:
        attach(con, catalog, data_path, read_only=read_only)
        yield con
    finally:
        con.close()


def _retryable(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.TransactionException) or any(
        text in str(exc) for text in RETRYABLE
    )


def run_unit(
    con: duckdb.DuckDBPyConnection,
    what: str,
    unit: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    attempts: int = 20,
    wait_s: float = 0.1,
) -> T:
    """Run `unit` as one transaction; when its commit loses a race with another writer, roll
    back and run it whole again (it must be idempotent), with a growing wait. Other errors,
    and the last attempt's, are raised."""
    for attempt in range(1, attempts + 1):
        try:
            con.execute("BEGIN TRANSACTION")
            result = unit(con)
            con.execute("COMMIT")
            return result
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the failed commit already ended the transaction
            if attempt == attempts or not _retryable(exc):
                raise
            reason = str(exc).strip().splitlines()[-1]
            log.info(
                "%s: attempt %d/%d lost a commit race (%s); running it again",
                what,
                attempt,
                attempts,
                reason,
            )
            # Jittered, so that two writers that collided do not collide again in step.
            time.sleep(wait_s * min(2 ** (attempt - 1), 20) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
