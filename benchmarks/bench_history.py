"""A night's cost against the history behind it: one night at 30, 90 and 180 days of history.

The nightly's stages run as library calls in one process for day D = the last history day + 1,
each timed:

- land: day D's raw transactions and chargebacks (and their current batches) written straight
  into the raw tables, as `bench_features` writes them (ingestion has its own benchmark);
- dbt: `transform.build(D)`, the incremental `dbt build` of the day with its tests;
- snapshot gate, training-set gate, split, train (the logistic_regression candidate),
  evaluate and promote, export of the snapshot, scoring of D, push / verify / switch into a
  private Redis, monitoring of D: the `mlpipeline.pipeline.nightly` stages the DAG calls.

Every build (the histories' and the nights') passes the dbt var `training_window_days:
WINDOW` (default 7): a window already full at 30 days of history (21 days of label maturity
leave 9 matured days), so the three nights train on the same number of rows and the training
cost is comparable; the default of 60 days would grow the training set until 81 days.

One warehouse is grown from 30 to 90 to 180 days. At each size the added days are copied in
from one generated raw file (`bench_features.generate`: ROWS_PER_DAY transactions a day, 1 %
disputed 1-20 days later, a chargeback copied in once its report day is reached), the whole
history is built with `transform.build(last_day, full_refresh=True)`, then the night of D runs.
The first time, 29 days are built and a warm-up night (untimed) lands day 30: a process's first
night pays one-off costs (imports, MLflow's tables, Great Expectations' context). The
training-set gate reads the window from dbt_project.yml, so it is told WINDOW too.
Target: the night at 90 and at 180 days costs at most 1.3x the night at 30. The log gives each
night's seconds per stage and the dbt build's slowest models and tests (what grows, if anything).

`BENCH_HISTORY_ROWS_PER_DAY` (default 100,000), `BENCH_HISTORY_SIZES` (default 30,90,180) and
`BENCH_HISTORY_WINDOW` (default 7) shrink it for a quick look (10,000 a day: a few minutes).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks import bench_features, nightly_stages
from benchmarks.harness import Result
from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.devtools import localredis
from mlpipeline.features import transform

log = logging.getLogger(__name__)

ROWS_PER_DAY = int(os.environ.get("BENCH_HISTORY_ROWS_PER_DAY", 100_000))
SIZES = [int(n) for n in os.environ.get("BENCH_HISTORY_SIZES", "30,90,180").split(",")]
WINDOW = int(os.environ.get("BENCH_HISTORY_WINDOW", 7))
TARGET = 1.3
CANDIDATE = "logistic_regression"


def _log_slowest_nodes(settings: Settings, day: date, count: int = 8) -> None:
    """The dbt build's slowest models and tests (run_results.json): what grows, if anything."""
    target = settings.data_dir / "dbt" / "prod" / "target"
    results = json.loads((target / "run_results.json").read_text())["results"]
    slowest = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:count]
    nodes = ", ".join(f"{r['unique_id'].split('.')[2]} {r['execution_time']:.1f}" for r in slowest)
    log.warning("night %s, dbt: slowest nodes (s): %s", day, nodes)


def _night(settings: Settings, source: Path, day: date) -> dict[str, float]:
    """Seconds of each stage of the night of `day`, in the DAG's order."""
    stage = nightly_stages.Stages(f"night {day}")
    yesterday = day - timedelta(days=1)
    stage("land", bench_features.copy_raw, source, settings, after=yesterday, through=day)
    stage(
        "dbt",
        transform.build,
        day,
        settings=settings,
        variables={"training_window_days": WINDOW},
    )
    _log_slowest_nodes(settings, day)
    nightly_stages.after_features(
        stage, settings, day, f"bench-history-{day}", candidates=[CANDIDATE], train=True
    )
    return stage.seconds


def _history(settings: Settings, source: Path, after: date | None, last: date) -> float:
    """Copy the raw days after `after` through `last` in, then build the whole history."""
    started = time.perf_counter()
    bench_features.copy_raw(source, settings, after=after, through=last)
    transform.build(
        last,
        settings=settings,
        full_refresh=True,
        variables={"training_window_days": WINDOW},
    )
    return time.perf_counter() - started


def run(workdir: Path) -> list[Result]:
    first = bench_features.FIRST_DAY
    final = first + timedelta(days=max(SIZES))  # the last night's day
    settings = Settings.under(workdir / "data")
    settings.data_dir.mkdir(parents=True)
    warehouse.create(settings)
    source = workdir / "generated.duckdb"
    rows = bench_features.generate(
        source, final, rows=ROWS_PER_DAY, customers=max(ROWS_PER_DAY // 4, 1_000)
    )
    log.warning("generated %d transactions over %d days", rows, (final - first).days + 1)

    url, _ = localredis.start(workdir / "redis", persist=False)
    nights: dict[int, dict[str, float]] = {}
    try:
        with nightly_stages.pipeline_env(settings, url, window=WINDOW):
            loaded: date | None = None
            for size in sorted(SIZES):
                last = first + timedelta(days=size - 1)
                if loaded is None:
                    # The process's first night pays one-off costs (imports, MLflow's tables,
                    # GX's context): a warm-up night on the history's last day keeps them out.
                    built = _history(settings, source, None, last - timedelta(days=1))
                    warm_up = _night(settings, source, last)
                    log.warning("warm-up night: %.1fs", sum(warm_up.values()))
                else:
                    built = _history(settings, source, loaded, last)
                log.warning("history of %d days built in %.1fs", size, built)
                nights[size] = _night(settings, source, last + timedelta(days=1))
                loaded = last + timedelta(days=1)
    finally:
        localredis.stop(url)

    for size, seconds in nights.items():
        stages = ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())
        log.warning("night at %d days: %.1fs (%s)", size, sum(seconds.values()), stages)
    base = min(SIZES)
    scale = f"{ROWS_PER_DAY:,} txn/day, training window {WINDOW} days"
    return [
        Result.at_most(
            f"night at {size} days of history vs at {base} ({scale})",
            sum(nights[size].values()),
            "s",
            sum(nights[base].values()),
            TARGET,
        )
        for size in sorted(SIZES)
        if size != base
    ]
