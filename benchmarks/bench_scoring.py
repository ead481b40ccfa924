"""Scoring a 1M-transaction day end to end (`score.score_day`) against a plain script doing the
same read from DuckDB, `predict_proba` and Delta write, measured in the same run.

Both use the same registered model (the configured hist_gradient_boosting candidate, trained
through `train.train_candidate` and promoted to `champion`), loaded before the clock starts, and
read the same `features.transaction_features` day, built directly in DuckDB with every declared
online feature. The plain script reads the whole day into one DataFrame, predicts and writes it
with `write_deltalake`; `score_day` also checks the schema and the counts, streams the day in
chunks (`scoring.chunk_rows`) through `write_deltalake` (one commit replacing the day), copies
the committed day's files into `scores.transaction_scores` and records the day in `meta.days`.
Each variant runs twice, alternating, each time in a fresh process; the faster run of each
counts for the rate, the larger working memory (peak resident size above the size once the
model is loaded) for memory.

Targets: at least 80 % of the plain script's rows per second, and at most half its working
memory (the plain script's grows with the day, score_day's with the chunk). The monitoring stage
(`monitor_day`: input drift on a bounded sample, prediction drift on every score, realized
performance) on the day score_day published takes at most half score_day's time.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from benchmarks.harness import Result
from mlpipeline import warehouse
from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.features import dbt_project
from mlpipeline.training import model_registry
from mlpipeline.warehouse.raw_tables import ensure_raw

ROWS = 1_000_000
TRAIN_ROWS = 60_000
DAY = date(2026, 3, 1)
TRAIN_DAY = date(2026, 2, 28)
THRESHOLD = "0.5"
# monitor_day after score_day: it monitors the day score_day published.
VARIANTS = ("plain", "score_day", "monitor_day")
log = logging.getLogger(__name__)


def _feature_value(name: str, kind: str) -> str:
    """A deterministic, varied value of the declared type (a NULL about every ninth row)."""
    h = f"hash(i, '{name}')"
    base = kind.upper().split("(")[0].strip()
    if base == "DECIMAL":
        value = f"(({h} % 90000) / 100.0 + 1)::{kind}"
    elif base in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT"):
        return f"({h} % 60)::{kind}"
    elif base == "DOUBLE":
        value = f"(({h} % 1000) / 1000.0)::DOUBLE"
    elif base == "VARCHAR":
        value = f"['NL', 'DE', 'FR', 'BE', 'US'][1 + ({h} % 5)::INTEGER]"
    elif base == "TIMESTAMP":
        value = f"(DATE '{DAY}' - to_seconds(({h} % 2592000)::BIGINT))"
    else:
        raise ValueError(f"no benchmark values for online feature {name} of type {kind}")
    return f"CASE WHEN {h} % 9 = 0 THEN NULL ELSE {value} END"


def features_sql(day: date, rows: int) -> str:
    """`rows` transactions of `day` in the shape dbt gives features.transaction_features."""
    features = ",\n    ".join(
        f"{_feature_value(f.name, f.type)} AS {f.name}" for f in dbt_project.online_spec().features
    )
    second = f"(i * 86400 // {rows})::BIGINT"
    return f"""
SELECT
    'tx-{day:%Y%m%d}-' || lpad(i::VARCHAR, 8, '0') AS transaction_id,
    'c' || lpad((hash(i, 'c') % 200000)::VARCHAR, 6, '0') AS customer_id,
    'm' || (hash(i, 'm') % 5000)::VARCHAR AS merchant_id,
    ['grocery', 'restaurants', 'fuel', 'travel', 'electronics', 'fashion', 'digital_goods',
     'pharmacy', 'entertainment', 'jewelry'][1 + (hash(i, 'k') % 10)::INTEGER] AS merchant_category,
    ((hash(i, 'a') % 50000) / 100.0 + 1)::DECIMAL(18, 2) AS amount,
    'EUR' AS currency,
    ['NL', 'DE', 'FR', 'BE', 'US', 'GB'][1 + (hash(i, 'co') % 6)::INTEGER] AS country,
    ['online', 'pos', 'contactless'][1 + (hash(i, 'ch') % 3)::INTEGER] AS channel,
    DATE '{day}' + to_seconds({second}) AS event_ts,
    DATE '{day}' AS dt,
    'transactions-{day}' AS batch_id,
    'bench0000001' AS revision,
    CASE WHEN {second} < 7200 THEN DATE '{day}' - 2 ELSE DATE '{day}' - 1 END AS snapshot_cutoff,
    {features}
FROM range({rows}) AS r(i)
"""


def train_champion(settings: Settings, rows: int = TRAIN_ROWS) -> None:
    """A champion (the configured hist_gradient_boosting candidate, threshold THRESHOLD) trained
    on `rows` transactions of TRAIN_DAY with planted fraud, its split kept and evaluated as the
    nightly does (monitoring's reference); bench_serving serves it too."""
    from mlpipeline.core.objectstore import from_settings
    from mlpipeline.training.candidates import load_candidates
    from mlpipeline.training.evaluate import EvaluationRules, evaluate_candidate
    from mlpipeline.training.split import split_dataset
    from mlpipeline.training.split_store import persist_split
    from mlpipeline.training.train import train_candidate

    with duckdb.connect() as con:
        training = con.execute(
            f"""
            SELECT *, (CASE WHEN (channel = 'online' AND amount > 300
                                  AND country IS DISTINCT FROM usual_country)
                              OR hash(transaction_id) % 200 = 0 THEN 1 ELSE 0 END) AS is_fraud
            FROM ({features_sql(TRAIN_DAY, rows)})
            """
        ).df()
    candidate = next(c for c in load_candidates() if c.estimator == "hist_gradient_boosting")
    split = split_dataset(training, strategy="random")
    persist_split(from_settings(settings), split)
    result = train_candidate(
        split,
        candidate,
        feature_columns=dbt_project.online_spec().features,
        tracking_uri=settings.mlflow_tracking_uri,
        lineage={
            "training_cutoff": TRAIN_DAY,
            "batch_revisions": {f"transactions-{TRAIN_DAY}": "bench0000001"},
            "dbt_manifest_hash": dbt_project.manifest_hash(),
            "git_commit": "benchmark",
        },
    )
    evaluate_candidate(
        result, split, rules=EvaluationRules.from_conf(), tracking_uri=settings.mlflow_tracking_uri
    )
    client = model_registry.client(settings.mlflow_tracking_uri)
    name = model_registry.MODEL_NAME
    client.set_model_version_tag(name, result.model_version, "decision_threshold", THRESHOLD)
    client.set_registered_model_alias(name, model_registry.CHAMPION_ALIAS, result.model_version)


def _prepare(settings: Settings) -> None:
    """The day to score, and a champion trained on another day."""
    warehouse.create(settings)
    with warehouse.connect(settings) as con:
        ensure_raw(con)  # empty: no chargeback arrived yet (monitoring's labels)
        con.execute(f"CREATE TABLE features.transaction_features AS {features_sql(DAY, ROWS)}")
    train_champion(settings)


def _plain(settings: Settings, champion: Any, model: Any) -> int:
    """What a hand-written script does: one read, one predict_proba, one Delta write."""
    from deltalake import write_deltalake

    with warehouse.connect(settings, read_only=True) as con:
        frame = con.execute("SELECT * FROM features.transaction_features WHERE dt = ?", [DAY]).df()
    scores = model.predict_proba(frame)[:, 1]
    rows = len(frame)
    utc = pa.timestamp("us", "UTC")
    table = pa.table(
        {
            "dt": pa.array(frame["dt"]).cast(pa.date32()),
            "transaction_id": pa.array(frame["transaction_id"], pa.string()),
            "customer_id": pa.array(frame["customer_id"], pa.string()),
            "score": pa.array(scores, pa.float64()),
            "decision": pa.array(scores >= champion.decision_threshold, pa.bool_()),
            "model_name": pa.repeat(pa.scalar(champion.name), rows),
            "model_version": pa.repeat(pa.scalar(champion.version), rows),
            "snapshot_cutoff": pa.array(frame["snapshot_cutoff"]).cast(pa.date32()),
            "batch_id": pa.array(frame["batch_id"], pa.string()),
            "revision": pa.array(frame["revision"], pa.string()),
            "scoring_run_id": pa.repeat(pa.scalar("plain"), rows),
            "scored_at": pa.repeat(pa.scalar(time.time_ns() // 1000, utc), rows),
        }
    )
    write_deltalake(
        str(settings.data_dir / "plain_scores"),
        table,
        mode="overwrite",
        predicate=f"dt = '{DAY}'",
        partition_by=["dt"],
    )
    return rows


def _score_day(settings: Settings, champion: Any, model: Any) -> int:
    from mlpipeline.scoring.score import score_day

    result = score_day(
        DAY,
        settings=settings,
        champion=champion,
        load_model=lambda ref: model,
        run_id="bench",
    )
    return result.rows_scored


def _monitor_day(settings: Settings, champion: Any, model: Any) -> int:
    """The nightly's monitoring stage on the day score_day published (it runs after it)."""
    from mlpipeline.monitoring.monitor import monitor_day

    summary = monitor_day(settings, DAY)
    if summary.model_version != champion.version or summary.status == "no_reference":
        raise RuntimeError(f"monitoring compared nothing: {summary.text()}")
    return int(summary.rows["rows_current"].max())


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _child(variant: str, workdir: Path) -> None:
    """One measured run in this fresh process; prints rows, seconds and memory as JSON.

    The model is resolved and loaded before the clock starts (the same for both variants);
    memory is the peak resident size while working, above the size once the model is loaded.
    """
    settings = Settings.under(workdir / "data")
    work = {"plain": _plain, "score_day": _score_day, "monitor_day": _monitor_day}[variant]
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    model = model_registry.load_model(champion)
    baseline = _rss_mb()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    rows = work(settings, champion, model)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_mb())
    print(
        json.dumps(
            {
                "variant": variant,
                "rows": rows,
                "seconds": seconds,
                "working_mb": peak[0] - baseline,
                "baseline_mb": baseline,
            }
        )
    )


def _measure(variant: str, workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scoring", variant, str(workdir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"benchmark run {variant} failed:\n{done.stderr[-4000:]}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    if variant != "monitor_day" and outcome["rows"] != ROWS:
        raise RuntimeError(f"{variant} scored {outcome['rows']} rows, expected {ROWS}")
    log.warning("%s: %s", variant, outcome)
    return outcome


def run(workdir: Path) -> list[Result]:
    settings = Settings.under(workdir / "data")
    _prepare(settings)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(2):
        for variant in VARIANTS:
            runs[variant].append(_measure(variant, workdir))
    best = {v: min(runs[v], key=lambda r: r["seconds"]) for v in VARIANTS}
    working = {v: max(r["working_mb"] for r in runs[v]) for v in VARIANTS}
    shutil.rmtree(settings.data_dir / "plain_scores", ignore_errors=True)
    return [
        Result.at_least(
            "score_day_rows_per_second",
            ROWS / best["score_day"]["seconds"],
            "rows/s",
            ROWS / best["plain"]["seconds"],
            0.8,
        ),
        Result.at_most(
            "score_day_working_memory", working["score_day"], "MB", working["plain"], 0.5
        ),
        Result.at_most(
            "monitor_day_seconds_vs_score_day",
            best["monitor_day"]["seconds"],
            "s",
            best["score_day"]["seconds"],
            0.5,
        ),
    ]


if __name__ == "__main__":
    _child(sys.argv[1], Path(sys.argv[2]))
