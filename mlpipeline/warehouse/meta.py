"""The `meta` schema: batch registry, status history, check results, rejects and per-day state.

Every stage records what it did here so any downstream row or file traces back to the raw
revisions it came from, and on-call can see a day's state without reading logs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import duckdb

from mlpipeline.warehouse import lake

DDL = """
CREATE SCHEMA IF NOT EXISTS meta;
CREATE TABLE IF NOT EXISTS meta.batches (
    batch_id VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    dt DATE NOT NULL,
    status VARCHAR NOT NULL,
    source_objects JSON,
    content_checksum VARCHAR NOT NULL,
    rows_declared BIGINT,
    rows_read BIGINT,
    rows_written BIGINT,
    rows_rejected BIGINT,
    object_prefix VARCHAR,
    error VARCHAR,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS meta.batch_events (
    batch_id VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    detail VARCHAR,
    run_id VARCHAR,
    recorded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS meta.validation_results (
    subject VARCHAR NOT NULL,
    suite VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    column_name VARCHAR,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    observed VARCHAR,
    run_id VARCHAR,
    recorded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS meta.rejected_rows (
    batch_id VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    rule VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS meta.days (
    day DATE NOT NULL,
    published BOOLEAN DEFAULT FALSE,
    no_model_yet BOOLEAN DEFAULT FALSE,
    incomplete_history BOOLEAN DEFAULT FALSE,
    missing_batches VARCHAR,
    stale BOOLEAN DEFAULT FALSE,
    rows_to_score BIGINT,
    rows_scored BIGINT,
    model_name VARCHAR,
    model_version VARCHAR,
    export_id VARCHAR,
    snapshot_rows BIGINT,
    updated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS meta.registry_claims (
    registry VARCHAR NOT NULL,
    claims BIGINT NOT NULL
);
INSERT INTO meta.registry_claims
SELECT registry, 0 FROM (VALUES ('batches'), ('days'), ('rejected_rows')) AS wanted(registry)
WHERE registry NOT IN (SELECT registry FROM meta.registry_claims);
"""

DAY_FIELDS = {
    "published",
    "no_model_yet",
    "incomplete_history",
    "missing_batches",
    "stale",
    "rows_to_score",
    "rows_scored",
    "model_name",
    "model_version",
    "export_id",
    "snapshot_rows",
}


def utcnow() -> datetime:
    """Naive UTC timestamp: the warehouse stores every time in UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_meta(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def claim(con: duckdb.DuckDBPyConnection, registry: str) -> None:
    """Make the caller's transaction conflict with every other one that writes `registry`.

    The warehouse (a DuckLake) has no unique keys, and two transactions that both insert a new
    key would both commit, even after each deleted it first when the delete matched no row
    (duckdb/ducklake#1393 in the pinned build). Each registry write first updates the registry's
    row here: of two concurrent writers one commits, the other's commit is refused and its unit
    runs again (`lake.run_unit`), now seeing the first one's key. The incremental dbt models
    claim their own rows the same way (`replace_day_partition`).
    """
    con.execute(
        "UPDATE meta.registry_claims SET claims = claims + 1 WHERE registry = ?", [registry]
    )


def update_day(con: duckdb.DuckDBPyConnection, day: date, **fields: Any) -> None:
    """Set the given fields of a day's row in `meta.days`, leaving the others as they are:
    one row per day, updated when it exists and inserted otherwise, as one unit (the caller's
    transaction when there is one)."""
    unknown = set(fields) - DAY_FIELDS
    if unknown:
        raise ValueError(f"unknown meta.days fields: {sorted(unknown)}")
    ensure_meta(con)
    lake.run_unit(con, f"meta.days {day}", lambda c: _set_day(c, day, fields))


def _set_day(con: duckdb.DuckDBPyConnection, day: date, fields: dict[str, Any]) -> None:
    claim(con, "days")
    names = [*fields, "updated_at"]
    values = [*fields.values(), utcnow()]
    found = con.execute("SELECT count(*) FROM meta.days WHERE day = ?", [day]).fetchall()[0][0]
    if found:
        assignments = ", ".join(f"{name} = ?" for name in names)
        con.execute(f"UPDATE meta.days SET {assignments} WHERE day = ?", [*values, day])
    else:
        con.execute(
            f"INSERT INTO meta.days (day, {', '.join(names)}) "
            f"VALUES (?, {', '.join('?' * len(names))})",
            [day, *values],
        )
