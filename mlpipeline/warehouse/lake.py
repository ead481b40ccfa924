"""A DuckLake: the catalog in a SQL database, the data as Parquet files under a path, written by
many DuckDB processes at once with snapshot isolation.

A writer's commit can lose a race: DuckLake aborts it when another writer committed a
conflicting change first (both deleted from the same data file: the same incremental day, the
same registry row), and a SQLite catalog refuses a commit while another one holds its lock.
Neither leaves a partial change, so the caller's unit of work, idempotent by design, is simply
run again: `run_unit` does that, logging why.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlparse

import duckdb
import tenacity

from mlpipeline.core.config import Settings
from mlpipeline.core.retry import retrying
from mlpipeline.warehouse import duckdb_extensions

log = logging.getLogger(__name__)

T = TypeVar("T")

# Messages of errors after which a rolled-back unit may run again. The last two: another
# writer's object of the same name is in flight. dbt renames a view or table to
# `<name>__dbt_backup` while it replaces it and drops the backup only after committing, so two
# builds of one model can meet there (a view's rename says the first, a table's the second; a
# build drops its own stale backup before it starts, so a backup found there is another's).
RETRYABLE = (
    "database is locked",
    "Transaction conflict",
    "Failed to commit DuckLake",
    "another entry with this name already exists",
    "__dbt_backup already exists",
)


ALIAS = "lake"


def _extensions(catalog: str, data_path: str) -> list[str]:
    kind = catalog.split(":", 1)[0]
    if kind not in {"sqlite", "postgres"}:
        raise ValueError(
            f"DuckLake catalog {catalog!r}: expected 'sqlite:<file>' or 'postgres:<libpq "
            "connection string>'"
        )
    return ["ducklake", kind, *(["httpfs"] if data_path.startswith("s3://") else [])]


def sql_string(value: str) -> str:
    """`value` as a SQL string literal (DuckDB's and PostgreSQL's quoting)."""
    return "'" + value.replace("'", "''") + "'"


def s3_settings(settings: Settings | None = None) -> dict[str, str]:
    """DuckDB's settings for a data path in S3, from the variables boto3 reads (an endpoint URL
    such as MinIO's becomes host:port, path-style, TLS as its scheme says)."""
    settings = settings or Settings.from_env()
    endpoint = urlparse(settings.aws_endpoint_url or "https://s3.amazonaws.com")
    return {
        "s3_endpoint": endpoint.netloc,
        "s3_use_ssl": "true" if endpoint.scheme == "https" else "false",
        "s3_url_style": "vhost" if endpoint.netloc.endswith("amazonaws.com") else "path",
        "s3_region": settings.aws_region,
        "s3_access_key_id": settings.aws_access_key_id,
        "s3_secret_access_key": settings.aws_secret_access_key.get_secret_value(),
    }


def attach(
    con: duckdb.DuckDBPyConnection,
    catalog: str,
    data_path: str,
    *,
    read_only: bool = False,
    create: bool = True,
    alias: str = ALIAS,
) -> None:
    """Attach the lake as `alias` (by default `lake`, the name dbt's profile gives it too, so
    SQL dbt compiled runs here as it is) and make it the connection's default database.

    With `create`, DuckLake makes the catalog on first attach and records the data path in it;
    without, a catalog that is not one fails. An attach naming another data path than the
    recorded one fails, so two settings that disagree cannot split the warehouse.
    """
    duckdb_extensions.load(con, *_extensions(catalog, data_path))
    if data_path.startswith("s3://"):
        # GLOBAL: for this connection's database instance, its cursors included.
        for name, value in s3_settings().items():
            con.execute(f"SET GLOBAL {name} = {sql_string(value)}")
    options = f"DATA_PATH {sql_string(data_path)}" + (", READ_ONLY" if read_only else "")
    if not create:
        options += ", CREATE_IF_NOT_EXISTS false"
    con.execute(f"ATTACH {sql_string('ducklake:' + catalog)} AS {alias} ({options})")
    con.execute(f"USE {alias}")


def cursor(con: duckdb.DuckDBPyConnection, alias: str = ALIAS) -> duckdb.DuckDBPyConnection:
    """A cursor of `con` on the lake too: DuckDB starts each cursor on its in-memory database."""
    new = con.cursor()
    new.execute(f"USE {alias}")
    return new


def snapshot_id(con: duckdb.DuckDBPyConnection) -> int:
    """The snapshot `con` reads (its transaction's, in one): time travel reads it back with
    `AT (VERSION => id)`."""
    return con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchall()[0][0]


@contextmanager
def connect(
    catalog: str, data_path: str, *, read_only: bool = False, create: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the lake; many processes may hold one at the same time."""
    con = duckdb.connect(config=duckdb_extensions.config())
    try:
        attach(con, catalog, data_path, read_only=read_only, create=create)
        yield con
    finally:
        con.close()


def ensure_views(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """Create each `schema.view` from its SELECT, again only when that SQL changed.

    Every CREATE is a snapshot (a catalog commit) and the callers run on every load, so each view
    carries a fingerprint of its SQL as its comment and the ones that match are left alone.
    """
    found = dict(
        con.execute(
            "SELECT schema_name || '.' || view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database()"
        ).fetchall()
    )
    for name, select in views.items():
        mark = "sql " + hashlib.sha256(select.encode()).hexdigest()[:16]
        if found.get(name) != mark:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
            con.execute(f"COMMENT ON VIEW {name} IS '{mark}'")


def lost_a_race(message: str) -> bool:
    """Whether an error says a commit was refused for another writer's (nothing was changed)."""
    return any(text in message for text in RETRYABLE)


def _retryable(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.TransactionException) or lost_a_race(str(exc))


# Connections running a unit now (by id): a unit started within one joins it. (DuckDB cannot
# say whether a connection is in a transaction, and a BEGIN inside one aborts it.)
_IN_UNIT: set[int] = set()


def _once(con: duckdb.DuckDBPyConnection, unit: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """One attempt: the unit in a transaction, committed, or rolled back on any error."""
    con.execute("BEGIN TRANSACTION")
    _IN_UNIT.add(id(con))
    try:
        result = unit(con)
        con.execute("COMMIT")
        return result
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # the failed commit already ended the transaction
        raise
    finally:
        _IN_UNIT.discard(id(con))


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
    and the last attempt's, are raised. Called within another unit on the same connection,
    `unit` joins it: the enclosing unit commits, and runs again as a whole."""
    if id(con) in _IN_UNIT:
        return unit(con)

    def on_retry(attempt: int, _: float, outcome: Future) -> None:
        reason = str(outcome.exception()).strip().splitlines()[-1]
        log.info(
            "%s: attempt %d/%d lost a commit race (%s); running it again",
            what,
            attempt,
            attempts,
            reason,
        )

    return retrying(
        attempts=attempts,
        # Jittered, so that two writers that collided do not collide again in step.
        wait=tenacity.wait_random_exponential(multiplier=wait_s, max=20 * wait_s),
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, duckdb.Error) and _retryable(exc)
        ),
        on_retry=on_retry,
    )(_once, con, unit)
