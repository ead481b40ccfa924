"""DDL of the raw layer: every revision of every batch, plus views of the current revisions.

The `*_current` views are the only way dbt (and so everything downstream) sees raw data, so a
revision that is not `current` in `meta.batches` (ingested, quarantined, discarded) is invisible.
"""

from __future__ import annotations

import duckdb

from mlpipeline.meta import ensure_meta

DATASET_COLUMNS: dict[str, dict[str, str]] = {
    "transactions": {
        "transaction_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "merchant_id": "VARCHAR",
        "merchant_category": "VARCHAR",
        "amount": "DECIMAL(18,2)",
        "currency": "VARCHAR",
        "country": "VARCHAR",
        "channel": "VARCHAR",
        "event_ts": "TIMESTAMP",
    },
    "chargebacks": {
        "transaction_id": "VARCHAR",
        "reported_at": "TIMESTAMP",
        "reason_code": "VARCHAR",
    },
}

LINEAGE_COLUMNS = {
    "dt": "DATE",
    "batch_id": "VARCHAR",
    "revision": "VARCHAR",
    "source_file": "VARCHAR",
    "source_row": "BIGINT",
}


def table_columns(dataset: str) -> dict[str, str]:
    """Columns of `raw.<dataset>` in order: the landing contract, then lineage."""
    return {**DATASET_COLUMNS[dataset], **LINEAGE_COLUMNS}


def ensure_raw(con: duckdb.DuckDBPyConnection) -> None:
    ensure_meta(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for dataset in DATASET_COLUMNS:
        cols = ", ".join(f"{name} {kind}" for name, kind in table_columns(dataset).items())
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{dataset} ({cols})")
        con.execute(
            f"""
            CREATE OR REPLACE VIEW raw.{dataset}_current AS
            SELECT r.*
            FROM raw.{dataset} AS r
            JOIN meta.batches AS b
              ON b.batch_id = r.batch_id AND b.revision = r.revision AND b.status = 'current'
            """
        )
