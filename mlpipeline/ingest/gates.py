"""Where each quality gate sits and what it checks: the subject, the frame GX sees, the
parameters the suite's thresholds come from.

- Raw gates run on a revision once loaded (registered, not current), before promotion. Row
  rules have already rejected the rows that break them (at prepare), so the raw suites judge
  the revision as a whole: rows written plus rejected against `_SUCCESS`, the reject rate,
  volume and distinct customers against recent days, ids already current in other batches,
  amount and channel distributions, how far into the day the data reaches.
  A failure quarantines the revision.
- The snapshot gate runs on cutoff D's rows after dbt; it gates export, push, training and
  scoring. The training-set gate runs on the matured labelled rows and gates training only.
  Neither quarantines source batches: the cause is often a model change, not bad data.

Derived columns are computed here in SQL, beside the revision's own, and named in the suite
files' descriptions. Rows are indexed `file:row`, so a failure names offending values by their
position in the landed files.
"""

from __future__ import annotations

import statistics
from datetime import date, datetime, time, timedelta
from typing import Any

import duckdb
import pandas as pd
import yaml

from mlpipeline.core import categories
from mlpipeline.core.config import Settings
from mlpipeline.core.days import cutoff_ts
from mlpipeline.ingest import batches
from mlpipeline.quality import CheckOutcome, DataDocs, quality_conf, run_suite, suite_columns
from mlpipeline.warehouse.raw_tables import table_columns

_ONE_US = timedelta(microseconds=1)


def raw_gate(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    revision: str,
    *,
    docs: DataDocs | None = None,
    run_name: str | None = None,
) -> CheckOutcome:
    """Check a loaded revision (registered, not yet current) before promotion.

    The rows are read from the warehouse as loaded, and the counts from the registry. A
    chargeback whose transaction is not current yet is a loaded row like any other: it waits
    (`pending_rows`) and the suite only warns about it, so the verdict does not depend on the
    order days are processed in.
    """
    registered = batches.get(con, batch_id, revision)
    if registered is None:
        raise LookupError(
            f"batch {batch_id} revision {revision} is not registered; load it first "
            "(mlpipeline.ingest.revisions.load_revision)"
        )
    dataset, day = registered["dataset"], registered["dt"]
    suite = f"raw_{dataset}"
    conf = quality_conf()["raw"]
    declared, rejected = int(registered["rows_declared"]), int(registered["rows_rejected"])
    allowed = max(int(declared * conf["max_reject_rate"][dataset]), int(conf["reject_allowance"]))
    start = datetime.combine(day, time.min)
    parameters: dict[str, Any] = {
        "rows_expected": declared - rejected,
        # The allowance spares a small batch judged by one row, not a file whose every row was
        # rejected: with rows declared, at least one must remain.
        "rows_min_after_rejects": max(declared - allowed, min(declared, 1)),
        "distribution_min_rows": int(conf["distribution_min_rows"]),
        "day_start": start,
        "day_last_instant": start + timedelta(days=1) - _ONE_US,
    }
    if dataset == "transactions":
        df = _transactions_frame(con, batch_id, revision, day, conf["transactions"])
        parameters.update(_transactions_parameters(con, day, start, conf))
        parameters["merchant_categories"] = list(categories.declared("merchant_category").values)
    else:
        df = _chargebacks_frame(con, batch_id, revision)
        parameters["max_report_delay_days"] = float(conf["chargebacks"]["max_report_delay_days"])
        parameters["reason_codes"] = list(categories.declared("reason_code").values)
    return run_suite(
        suite,
        df,
        subject=f"{batch_id}@{revision}",
        parameters=parameters,
        docs=docs,
        run_name=run_name,
    )


def _revision_frame(
    con: duckdb.DuckDBPyConnection, dataset: str, select: str, joins: str, params: list[Any]
) -> pd.DataFrame:
    """The revision's rows in file order, indexed `file:row` so that offending values are
    named by their position in the landed files."""
    df = con.execute(
        f"SELECT r.source_file || ':' || r.source_row AS position, {select} "
        f"FROM raw.{dataset} AS r {joins} "
        "WHERE r.batch_id = ? AND r.revision = ? ORDER BY r.source_file, r.source_row",
        params,
    ).df()
    return df.set_index("position").rename_axis(None)


def _transactions_frame(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str, day: date, conf: dict[str, Any]
) -> pd.DataFrame:
    """The revision's columns the suite reads, plus `is_online` and `already_current_in`."""
    lookback = timedelta(days=int(conf["duplicate_lookback_days"]))
    wanted = suite_columns("raw_transactions") - {"is_online", "already_current_in"}
    columns = [
        f"r.{c}::DOUBLE AS {c}" if c == "amount" else f"r.{c}"
        for c in table_columns("transactions")
        if c in wanted
    ]
    return _revision_frame(
        con,
        "transactions",
        ", ".join(
            [
                *columns,
                "(r.channel = 'online')::DOUBLE AS is_online",
                "d.batch_id AS already_current_in",
            ]
        ),
        "LEFT JOIN (SELECT transaction_id, min(batch_id) AS batch_id "
        "FROM raw.transactions_current WHERE batch_id <> ? AND dt BETWEEN ? AND ? "
        "AND transaction_id IN (SELECT transaction_id FROM raw.transactions "
        "WHERE batch_id = ? AND revision = ?) GROUP BY ALL) AS d USING (transaction_id)",
        [batch_id, day - lookback, day + lookback, batch_id, revision, batch_id, revision],
    )


def _transactions_parameters(
    con: duckdb.DuckDBPyConnection, day: date, start: datetime, conf: dict[str, Any]
) -> dict[str, Any]:
    tx = conf["transactions"]
    gap = timedelta(hours=float(tx["max_edge_gap_hours"]))
    return {
        "amount_mean_min": float(tx["amount_mean_eur"][0]),
        "amount_mean_max": float(tx["amount_mean_eur"][1]),
        "amount_median_min": float(tx["amount_median_eur"][0]),
        "amount_median_max": float(tx["amount_median_eur"][1]),
        "amount_p99_max": float(tx["amount_p99_max_eur"]),
        "online_share_min": float(tx["online_share"][0]),
        "online_share_max": float(tx["online_share"][1]),
        "customer_share_min": float(tx["min_customer_share"]),
        "first_event_by": start + gap,
        "last_event_from": start + timedelta(days=1) - gap,
        **_recent(con, day, conf),
    }


def _recent(con: duckdb.DuckDBPyConnection, day: date, conf: dict[str, Any]) -> dict[str, Any]:
    """Bounds from the median of the recent current days with rows (a declared-empty day would
    drag the median to nothing); None without such history."""
    recent = con.execute(
        "SELECT count(*), count(DISTINCT customer_id) FROM raw.transactions_current "
        "WHERE dt >= ? AND dt < ? GROUP BY dt",
        [day - timedelta(days=int(conf["recent_days"])), day],
    ).fetchall()
    bounds: dict[str, Any] = {}
    for i, name in enumerate(("recent_rows", "recent_customers")):
        typical = statistics.median(row[i] for row in recent) if recent else None
        bounds[f"{name}_min"] = int(typical * conf["min_rows_ratio"]) if recent else None
        bounds[f"{name}_max"] = int(typical * conf["max_rows_ratio"]) + 1 if recent else None
    return bounds


def _chargebacks_frame(
    con: duckdb.DuckDBPyConnection, batch_id: str, revision: str
) -> pd.DataFrame:
    """The revision plus `already_reported_in` (another current batch charging the same
    transaction back), `transaction_ts` (its current transaction's time, null while it waits
    for one) and `report_delay_days` (since the transaction happened)."""
    ids = "SELECT transaction_id FROM raw.chargebacks WHERE batch_id = ? AND revision = ?"
    return _revision_frame(
        con,
        "chargebacks",
        "r.transaction_id, r.reason_code, p.batch_id AS already_reported_in, "
        "t.event_ts AS transaction_ts, "
        "date_diff('second', t.event_ts, r.reported_at) / 86400.0 AS report_delay_days",
        "LEFT JOIN (SELECT transaction_id, min(batch_id) AS batch_id "
        f"FROM raw.chargebacks_current WHERE batch_id <> ? AND transaction_id IN ({ids}) "
        "GROUP BY ALL) AS p USING (transaction_id) "
        "LEFT JOIN (SELECT transaction_id, min(event_ts) AS event_ts "
        f"FROM raw.transactions_current WHERE transaction_id IN ({ids}) "
        "GROUP BY ALL) AS t USING (transaction_id)",
        [batch_id, batch_id, revision, batch_id, revision, batch_id, revision],
    )


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    """DECIMAL columns may arrive as Python Decimals; GX compares floats."""
    for column in df.columns:
        if df[column].dtype == object:
            sample = df[column].dropna().head(1).tolist()
            if sample and type(sample[0]).__name__ == "Decimal":
                df[column] = df[column].astype("float64")
    return df


def snapshot_gate(
    con: duckdb.DuckDBPyConnection,
    day: date,
    *,
    feature_columns: list[str],
    ttl_days: int,
    docs: DataDocs | None = None,
    run_name: str | None = None,
) -> CheckOutcome:
    """Check cutoff D's snapshot: every customer active within the TTL is there, the newest
    transaction before the cutoff is reflected, the row count is in line with recent cutoffs."""
    conf = quality_conf()["snapshot"]
    cutoff = cutoff_ts(day)
    df = _numeric(
        con.execute("SELECT * FROM features.customer_snapshot WHERE cutoff_date = ?", [day]).df()
    )
    recent = con.execute(
        "SELECT count(*) FROM features.customer_snapshot "
        "WHERE cutoff_date >= ? AND cutoff_date < ? GROUP BY cutoff_date",
        [day - timedelta(days=int(conf["recent_cutoffs"])), day],
    ).fetchall()
    typical = statistics.median(n for (n,) in recent) if recent else None
    # Only the TTL's transactions: while the snapshot has rows, the newest transaction before
    # the cutoff is among them (the check of it needs rows), and the night reads no history.
    active, latest = con.execute(
        "SELECT count(DISTINCT customer_id), max(event_ts) "
        "FROM raw.transactions_current WHERE event_ts >= ? AND event_ts < ?",
        [cutoff - timedelta(days=ttl_days), cutoff],
    ).fetchone()
    parameters = {
        "day": pd.Timestamp(day),
        "cutoff_last_instant": cutoff - _ONE_US,
        "active_customers": int(active),
        "latest_event_ts": latest,
        "recent_rows_min": int(typical * conf["min_rows_ratio"]) if typical else None,
        "recent_rows_max": int(typical * conf["max_rows_ratio"]) + 1 if typical else None,
        "snapshot_columns": ["customer_id", "cutoff_date", "cutoff_ts", *feature_columns],
    }
    return run_suite(
        "customer_snapshot",
        df,
        subject=f"cutoff={day}",
        parameters=parameters,
        docs=docs,
        run_name=run_name,
    )


def _dbt_var(settings: Settings, name: str) -> Any:  # noqa: ANN401 - a YAML value
    project = yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())
    return project["vars"][name]


def label_maturity_days(settings: Settings) -> int:
    """The dbt var the training set's label horizon comes from (dbt_project.yml)."""
    return int(_dbt_var(settings, "label_maturity_days"))


def training_window_days(settings: Settings) -> int | None:
    """The dbt var that bounds the training set to the days before its label horizon
    (dbt_project.yml); None: all matured history."""
    days = _dbt_var(settings, "training_window_days")
    return None if days is None else int(days)


def training_set_gate(
    con: duckdb.DuckDBPyConnection,
    df: pd.DataFrame,
    day: date,
    *,
    maturity_days: int,
    window_days: int | None = None,
    docs: DataDocs | None = None,
    run_name: str | None = None,
) -> CheckOutcome:
    """Check the matured labelled rows for training cutoff D: one row per current transaction
    of the training window (the `window_days` before the label horizon; None: all before it),
    labels 0/1 at a plausible rate, features filled."""
    conf = quality_conf()["training_set"]
    horizon = cutoff_ts(day) - timedelta(days=maturity_days)
    window = [horizon - timedelta(days=window_days)] if window_days is not None else []
    (matured,) = con.execute(
        "SELECT count(*) FROM raw.transactions_current WHERE event_ts < ?"
        + (" AND event_ts >= ?" if window else ""),
        [horizon, *window],
    ).fetchone()
    parameters = {
        "day": pd.Timestamp(day),
        "rows_expected": int(matured),
        "label_horizon_last_instant": horizon - _ONE_US,
        "label_rate_min": float(conf["label_rate_min"]),
        "label_rate_max": float(conf["label_rate_max"]),
    }
    return run_suite(
        "training_set",
        _numeric(df.copy()),
        subject=f"training_cutoff={day}",
        parameters=parameters,
        docs=docs,
        run_name=run_name,
    )
