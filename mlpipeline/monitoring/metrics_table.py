"""The monitoring metrics table: a Delta table `monitoring/metrics/` in the object store,
partitioned by run day, that apps and analysts read like the score table, and the same rows in
the warehouse (`monitoring.metrics`).

A run day's rows are replaced as a whole: one Delta commit (overwrite with a predicate on the
partition) swaps them, so readers see the old rows or the new and other run days stay as they
were; the warehouse copy deletes and inserts the run day in one transaction.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.scoring.score_table import delta_location
from mlpipeline.warehouse import lake

METRICS_TABLE_KEY = "monitoring/metrics"

METRICS_SCHEMA = pa.schema(
    [
        pa.field("run_day", pa.date32(), nullable=False),
        pa.field("scored_day", pa.date32(), nullable=False),
        pa.field("check", pa.string(), nullable=False),
        pa.field("feature_or_metric", pa.string(), nullable=False),
        pa.field("method", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("drifted", pa.bool_()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("reference", pa.string()),
        pa.field("rows_current", pa.int64()),
        pa.field("rows_reference", pa.int64()),
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

DDL = """
CREATE SCHEMA IF NOT EXISTS monitoring;
CREATE TABLE IF NOT EXISTS monitoring.metrics (
    run_day DATE NOT NULL,
    scored_day DATE NOT NULL,
    "check" VARCHAR NOT NULL,
    feature_or_metric VARCHAR NOT NULL,
    method VARCHAR,
    value DOUBLE,
    threshold DOUBLE,
    drifted BOOLEAN,
    status VARCHAR NOT NULL,
    model_version VARCHAR,
    reference VARCHAR,
    rows_current BIGINT,
    rows_reference BIGINT,
    computed_at TIMESTAMP NOT NULL
);
"""


def metrics_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)


def publish(settings: Settings, run_day: date, table: pa.Table) -> None:
    """Replace the run day's rows in the Delta table, then in the warehouse."""
    if any(day != run_day for day in table.column("run_day").to_pylist()):
        raise ValueError(f"rows to publish for run day {run_day} carry other run days")
    location = delta_location(settings, METRICS_TABLE_KEY)
    write_deltalake(
        location.uri,
        table,
        mode="overwrite",
        predicate=f"run_day = '{run_day.isoformat()}'",
        partition_by=["run_day"],
        storage_options=location.storage_options,
    )
    with warehouse.connect(settings) as con:
        con.execute(DDL)
        with lake.cursor(con) as writer:
            lake.run_unit(
                writer,
                f"copy of run day {run_day}'s monitoring metrics into the warehouse",
                lambda c: _replace_run_day(c, run_day, table),
            )


def _replace_run_day(con: Any, run_day: date, table: pa.Table) -> None:
    con.execute("DELETE FROM monitoring.metrics WHERE run_day = ?", [run_day])
    con.register("monitoring_rows", table)
    try:
        con.execute("INSERT INTO monitoring.metrics SELECT * FROM monitoring_rows")
    finally:
        con.unregister("monitoring_rows")


def read_metrics(
    settings: Settings,
    run_day: date | None = None,
    *,
    since: date | None = None,
    until: date | None = None,
) -> pd.DataFrame:
    """The metric rows of one run day, or of the run days in [since, until] (all by default),
    from the Delta table; empty when none exist."""
    location = delta_location(settings, METRICS_TABLE_KEY)
    try:
        table = DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        return METRICS_SCHEMA.empty_table().to_pandas()
    filters = [("run_day", "=", run_day)] if run_day is not None else []
    filters += [("run_day", ">=", since)] if since is not None else []
    filters += [("run_day", "<=", until)] if until is not None else []
    return table.to_pandas(filters=filters or None)
