"""DDL of the raw layer: every revision of every batch, plus views of the current revisions.

The `*_current` views are the only way dbt (and so everything downstream) sees raw data, so a
revision that is not `current` in `meta.batches` (ingested, quarantined, discarded) is invisible.
A chargeback also needs its transaction current and reported at or after it, and must not be
rejected since (`pending_rows`): until then it waits in `meta.pending_rows`, whatever the order
the days are loaded in.
"""

from __future__ import annotations

import duckdb

from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import ensure_meta

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


_CURRENT_ROWS = """
SELECT r.*
FROM raw.{dataset} AS r
JOIN meta.batches AS b
  ON b.batch_id = r.batch_id AND b.revision = r.revision AND b.status = 'current'
"""

NOT_REJECTED = """
NOT EXISTS (
    SELECT 1 FROM meta.rejected_rows AS x
    WHERE x.batch_id = r.batch_id AND x.revision = r.revision
      AND x.source_file = r.source_file AND x.source_row = r.source_row
)
"""

_VIEWS = {
    "raw.transactions_current": _CURRENT_ROWS.format(dataset="transactions"),
    "raw.chargebacks_current": _CURRENT_ROWS.format(dataset="chargebacks")
    + "WHERE EXISTS (SELECT 1 FROM raw.transactions_current AS t "
    "WHERE t.transaction_id = r.transaction_id AND t.event_ts <= r.reported_at) "
    f"AND {NOT_REJECTED}",
    "meta.pending_rows": "SELECT 'chargebacks' AS dataset, r.batch_id, r.revision, "
    "r.source_file, r.source_row, r.dt, r.transaction_id AS waits_for_transaction FROM ("
    + _CURRENT_ROWS.format(dataset="chargebacks")
    + ") AS r WHERE NOT EXISTS (SELECT 1 FROM raw.transactions_current AS t "
    f"WHERE t.transaction_id = r.transaction_id) AND {NOT_REJECTED}",
}


def ensure_raw(con: duckdb.DuckDBPyConnection) -> None:
    ensure_meta(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for dataset in DATASET_COLUMNS:
        cols = ", ".join(f"{name} {kind}" for name, kind in table_columns(dataset).items())
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{dataset} ({cols})")
    lake.ensure_views(con, _VIEWS)
