"""Ingesting a 1M-row day (prepare + load) against a plain DuckDB script doing the same read,
Parquet copy and table load from local files, in the same run.

The pipeline loads into the warehouse (a DuckLake: Parquet files and a SQLite catalog), the
baseline into a plain DuckDB file. The pipeline also parses and checks every row (types, codes,
day bounds, duplicates), records the revision and writes through the object-store interface;
the baseline only moves bytes.
Target: at least half the baseline's rows per second.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.harness import Result, timed
from mlpipeline import warehouse
from mlpipeline.core import landing
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.ingest.revisions import load_revision, prepare_revision

ROWS = 1_000_000
DAY = date(2026, 3, 1)
log = logging.getLogger(__name__)


def _day_table(rows: int, seed: int = 7) -> pa.Table:
    """A valid landing-contract day of `rows` transactions (vectorised, seconds to build)."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(DAY, time.min)
    seconds = np.sort(rng.integers(0, 86_400, rows))
    ts = (np.datetime64(start) + seconds.astype("timedelta64[s]")).astype(str)
    categories = np.array(["grocery", "fuel", "travel", "restaurants", "electronics"])
    return pa.table(
        {
            "transaction_id": [f"t{DAY:%Y%m%d}{i:08d}" for i in range(rows)],
            "customer_id": [f"c{i:06d}" for i in rng.integers(0, 200_000, rows)],
            "merchant_id": [f"m{i:05d}" for i in rng.integers(0, 20_000, rows)],
            "merchant_category": categories[rng.integers(0, len(categories), rows)],
            "amount": np.char.mod("%.2f", rng.gamma(2.0, 30.0, rows).round(2) + 0.01),
            "currency": np.array(["EUR", "GBP", "USD"])[rng.integers(0, 3, rows)],
            "country": np.array(["DE", "FR", "GB", "ES"])[rng.integers(0, 4, rows)],
            "channel": np.array(["online", "pos", "contactless"])[rng.integers(0, 3, rows)],
            "event_ts": np.char.add(np.char.replace(ts, " ", "T"), "Z"),
        }
    )


def _pipeline(store: LocalStore, settings: Settings) -> int:
    prepared = prepare_revision(store, "transactions", DAY)
    with warehouse.connect(settings) as con:
        load_revision(con, store, prepared, run_id="bench")
        return con.execute("SELECT count(*) FROM raw.transactions").fetchall()[0][0]


def _baseline(csv_path: Path, workdir: Path) -> int:
    parquet = workdir / "baseline.parquet"
    with duckdb.connect(str(workdir / "baseline.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"COPY (SELECT * FROM read_csv('{csv_path}', header = true)) "
            f"TO '{parquet}' (FORMAT parquet, COMPRESSION zstd)"
        )
        con.execute(f"CREATE TABLE transactions AS SELECT * FROM read_parquet('{parquet}')")
        return con.execute("SELECT count(*) FROM transactions").fetchone()[0]


def run(workdir: Path) -> list[Result]:
    table = _day_table(ROWS)
    csv_path = workdir / "part-00000.csv"
    pacsv.write_csv(table, csv_path)
    store = LocalStore(workdir / "objectstore")
    store.put_file(landing.day_prefix("transactions", DAY) + "part-00000.csv", csv_path)
    landing.write_success(
        store, "transactions", DAY, [landing.DeclaredFile("part-00000.csv", ROWS)]
    )
    baseline_s, baseline_rows = timed(_baseline, csv_path, workdir)
    settings = Settings.under(workdir / "data")
    warehouse.create(settings)
    pipeline_s, pipeline_rows = timed(_pipeline, store, settings)
    if baseline_rows != ROWS or pipeline_rows != ROWS:
        raise RuntimeError(f"rows loaded: baseline {baseline_rows}, pipeline {pipeline_rows}")
    log.warning("baseline %.2fs, pipeline %.2fs for %d rows", baseline_s, pipeline_s, ROWS)
    return [
        Result.at_least(
            "ingest_1m_rows_per_s", ROWS / pipeline_s, "rows/s", ROWS / baseline_s, 0.5
        ),
    ]
