"""Where each quality gate sits and what it checks: the subject, the suite and its parameters.

Raw gates run on a revision written aside, before promotion; the snapshot gate runs on the
cutoff's rows after dbt; the training-set gate on the matured labelled rows.
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from mlpipeline.config import pipeline_conf
from mlpipeline.ingest import PreparedRevision
from mlpipeline.objectstore import ObjectStore
from mlpipeline.quality import CheckOutcome, run_suite
from mlpipeline.validation_rules import arrow_schema


def _day_bounds(day: date) -> dict[str, pd.Timestamp]:
    start = datetime.combine(day, time.min)
    return {
        "day_start": pd.Timestamp(start),
        "day_last_instant": pd.Timestamp(start + timedelta(days=1) - timedelta(microseconds=1)),
    }


def raw_gate(store: ObjectStore, prepared: PreparedRevision) -> CheckOutcome:
    """Check a prepared revision's rows (read back from the object store) before promotion."""
    if prepared.object_key:
        table = pq.read_table(io.BytesIO(store.get_bytes(prepared.object_key)))
    else:
        table = arrow_schema(prepared.dataset).empty_table()
    df = table.to_pandas()
    if "amount" in df:
        df["amount"] = df["amount"].astype("float64")
    parameters = {
        **_day_bounds(date.fromisoformat(prepared.day)),
        "rows_expected": prepared.rows_declared - prepared.rows_rejected,
        "max_amount_eur": float(pipeline_conf()["ingest"]["max_amount_eur"]),
    }
    return run_suite(
        f"raw_{prepared.dataset}",
        df,
        subject=f"{prepared.batch_id}@{prepared.revision}",
        parameters=parameters,
    )


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    """DECIMAL columns arrive as Python Decimals; GX compares floats."""
    for column in df.columns:
        if (
            df[column].dtype == object
            and df[column].map(type).astype(str).str.contains("Decimal").any()
        ):
            df[column] = df[column].astype("float64")
    return df


def snapshot_gate(con: duckdb.DuckDBPyConnection, day: date) -> CheckOutcome:
    """Check cutoff D's snapshot; its row count is compared with recent cutoffs."""
    conf = pipeline_conf()["quality"]["snapshot"]
    df = _numeric(
        con.execute("SELECT * FROM features.customer_snapshot WHERE cutoff_date = ?", [day]).df()
    )
    recent = con.execute(
        "SELECT count(*) FROM features.customer_snapshot "
        "WHERE cutoff_date >= ? AND cutoff_date < ? GROUP BY cutoff_date",
        [day - timedelta(days=conf["recent_cutoffs"]), day],
    ).fetchall()
    typical = sorted(n for (n,) in recent)[len(recent) // 2] if recent else None
    parameters = {
        "day": pd.Timestamp(day),
        "min_rows": int(typical * conf["min_rows_ratio"]) if typical else 1,
        "max_rows": int(typical * conf["max_rows_ratio"]) + 1 if typical else 10**12,
    }
    return run_suite("customer_snapshot", df, subject=f"cutoff={day}", parameters=parameters)


def training_set_gate(df: pd.DataFrame, day: date) -> CheckOutcome:
    """Check the matured labelled rows for training cutoff D."""
    conf = pipeline_conf()["quality"]["training_set"]
    parameters = {
        "min_rows": pipeline_conf()["labels"]["min_rows"],
        "label_rate_min": conf["label_rate_min"],
        "label_rate_max": conf["label_rate_max"],
    }
    return run_suite(
        "training_set",
        _numeric(df.copy()),
        subject=f"training_cutoff={day}",
        parameters=parameters,
    )
