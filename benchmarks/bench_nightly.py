"""The whole fraud_nightly for a 1M-transaction day, run by the scheduler with the LocalExecutor,
against the same stages called one after another as library calls in one process.

Data (bench_features' generator, CUSTOMERS = 200,000 customers): HISTORY_DAYS = 30 days before
day D, each of HISTORY_ROWS = 100,000 transactions except the last RECENT = 7 (the raw suite's
`quality.raw.recent_days`), which have DAY_ROWS = 1,000,000 like D: the raw checks compare a day's
row count and distinct customers with the median of the 7 days before it (within 0.5-2x), so a
1M day after 100k days would be quarantined. 1 % of transactions are disputed 1-20 days later.
Amounts are halved (uniform 0.5-150.5 EUR) so the day passes the raw suite's median bound.
The training window is WINDOW = 7 days (the dbt var `training_window_days`): with 21 days of label
maturity the night of D trains on the matured transactions of D-28..D-22, 7 x 100,000 rows, so
the training cost stays bounded. The dbt project runs from a copy whose dbt_project.yml sets that
window (DBT_PROJECT_DIR, as a deployment names its project): the DAG's dbt tasks, the library's
builds and the training-set gate all read it from there.

Preparation (untimed): the history's raw rows are written straight into the raw layer (one
current batch per dataset-day), built by one full-refresh `dbt build` up to D-1, then the night
of D-1 runs as library calls (its logistic_regression candidate made champion if the promotion
rules reject it: the labels are random), so D starts with a champion, scores and monitoring
behind it. D's transactions (two files of 500,000 rows) and the chargebacks reported on D are
landed as Parquet files with their `_SUCCESS` (the landing zone's contract). The prepared folder
(warehouse, object store, MLflow store and artifacts) is copied twice, so both sides start from
identical state, each with its own empty Redis:

- Airflow: the real `fraud_nightly` (dags/), triggered for D (a manual run: param `train` unset
  trains, as the training cadence says every run does) and run by the scheduler with the
  LocalExecutor, a DAG processor, a triggerer and the API server: ingestion (sensor, prepare,
  load, raw check, promote per dataset), the Cosmos dbt tasks, the snapshot gate, export / push /
  verify, the training-set gate, split, both candidates (two mapped tasks at once, one core
  each), evaluation, scoring, monitoring, the online switch. The figure is the run's start to
  its end as the metadata DB records them.
- Library: the same `mlpipeline.pipeline.nightly` calls in one process in the DAG's order, the
  dbt build as one `dbt build` of D (`nightly.build_features`), the candidates one after
  another (each with both cores: MLPIPELINE_TRAINING_PARALLEL_TASKS=1). The figure is the wall
  time of the whole sequence.

Target: Airflow at most 1.25x the library calls. The log gives each stage's seconds on both
sides (for Airflow: the sum of its tasks' run times, and the span from the first task's start
to the last one's end) and every task's time. `BENCH_NIGHTLY_DAY_ROWS`, `BENCH_NIGHTLY_CUSTOMERS`,
`BENCH_NIGHTLY_HISTORY_DAYS`, `BENCH_NIGHTLY_HISTORY_ROWS_PER_DAY` and `BENCH_NIGHTLY_WINDOW`
shrink it for a quick look (e.g. 24 days x 3,000, a day of 10,000, 2,000 customers, window 3:
a few minutes). Run: `make bench ONLY=bench_nightly` (16 minutes on two cores at load ~10).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from benchmarks.bench_features import FIRST_DAY, copy_raw, generate
from benchmarks.harness import Result
from benchmarks.nightly_stages import (
    Stages,
    after_features,
    copy_state,
    pipeline_env,
    run_in_airflow,
)
from mlpipeline import warehouse
from mlpipeline.core import landing
from mlpipeline.core.config import PROJECT_ROOT, Settings, pipeline_conf
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools import local_airflow, localredis
from mlpipeline.devtools.generate import CHARGEBACK_COLUMNS, TRANSACTION_COLUMNS
from mlpipeline.pipeline import nightly

log = logging.getLogger(__name__)

DAY_ROWS = int(os.environ.get("BENCH_NIGHTLY_DAY_ROWS", 1_000_000))
CUSTOMERS = int(os.environ.get("BENCH_NIGHTLY_CUSTOMERS", 200_000))
HISTORY_DAYS = int(os.environ.get("BENCH_NIGHTLY_HISTORY_DAYS", 30))
HISTORY_ROWS = int(os.environ.get("BENCH_NIGHTLY_HISTORY_ROWS_PER_DAY", 100_000))
WINDOW = int(os.environ.get("BENCH_NIGHTLY_WINDOW", 7))
RECENT = int(pipeline_conf()["quality"]["raw"]["recent_days"])
ROWS_PER_FILE = 500_000
TARGET = 1.25
DAG = "fraud_nightly"
PREPARED_CANDIDATE = "logistic_regression"
# The DAG's stages (its task groups and final tasks); the library's stage names map onto them.
STAGES = (
    "ingest",
    "dbt_build",
    "check_snapshot",
    "online",
    "training",
    "score",
    "monitor",
    "switch_online",
)
LIBRARY_STAGE = {
    "export": "online",
    "push": "online",
    "verify": "online",
    "check_training_set": "training",
    "split": "training",
    "train": "training",
    "evaluate_and_promote": "training",
    "switch": "switch_online",
}


def _rows_on(day: date) -> int:
    """D and the RECENT days before it have DAY_ROWS transactions, the earlier days fewer."""
    last = FIRST_DAY + timedelta(days=HISTORY_DAYS)
    return DAY_ROWS if (last - day).days <= RECENT else HISTORY_ROWS


def _dbt_project(workdir: Path) -> Path:
    """A copy of the dbt project whose training window is WINDOW days."""
    project = workdir / "dbt_project"
    shutil.copytree(
        PROJECT_ROOT / "dbt_project",
        project,
        ignore=shutil.ignore_patterns("target", "logs", ".user.yml"),
    )
    config = project / "dbt_project.yml"
    text, count = re.subn(
        r"(?m)^(\s+training_window_days:) .*$", rf"\g<1> {WINDOW}", config.read_text()
    )
    if count != 1:
        raise RuntimeError(f"no single training_window_days var in {config}")
    config.write_text(text)
    return project


def _land(source: Path, settings: Settings, day: date) -> None:
    """Day D's generated transactions and the chargebacks reported on D, landed as a producer
    delivers them: Parquet files of ROWS_PER_FILE rows (text columns), then `_SUCCESS`."""
    store = from_settings(settings)
    columns = {
        "transactions": [
            *(c for c in TRANSACTION_COLUMNS if c not in {"amount", "event_ts"}),
            "CAST(amount AS VARCHAR) AS amount",
            "strftime(event_ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS event_ts",
        ],
        "chargebacks": [
            f"strftime({c}, '%Y-%m-%dT%H:%M:%S.%fZ') AS {c}" if c == "reported_at" else c
            for c in CHARGEBACK_COLUMNS
        ],
    }
    folder = settings.data_dir / "landing-files"
    folder.mkdir()
    with duckdb.connect(str(source), read_only=True) as con:
        for dataset in landing.DATASETS:
            rows = con.execute(f"SELECT count(*) FROM raw.{dataset} WHERE dt = ?", [day])
            total = rows.fetchone()[0]
            declared = []
            for part, offset in enumerate(range(0, total, ROWS_PER_FILE)):
                name = f"part-{part:05d}.parquet"
                path = folder / f"{dataset}-{name}"
                con.execute(
                    f"COPY (SELECT {', '.join(columns[dataset])} FROM raw.{dataset} "
                    f"WHERE dt = DATE '{day}' ORDER BY source_row "
                    f"LIMIT {ROWS_PER_FILE} OFFSET {offset}) TO '{path}' (FORMAT parquet)"
                )
                store.put_file(landing.day_prefix(dataset, day) + name, path)
                path.unlink()
                declared.append(landing.DeclaredFile(name, min(ROWS_PER_FILE, total - offset)))
            landing.write_success(store, dataset, day, declared)
            log.warning("landed %s for %s: %d rows in %d files", dataset, day, total, len(declared))
    folder.rmdir()


def _prepare(workdir: Path, day: date, project: Path) -> Settings:
    """History up to D-1 built and its night run, D landed (see the module's docstring)."""
    prepared = Settings.under(workdir / "prepared")
    prepared.data_dir.mkdir(parents=True)
    warehouse.create(prepared)
    source = workdir / "generated.duckdb"
    started = time.perf_counter()
    rows = generate(source, day, rows=_rows_on, customers=CUSTOMERS)
    with duckdb.connect(str(source)) as con:
        # Uniform 1-301 EUR has a median above the raw suite's 150 EUR bound: halve it.
        con.execute("UPDATE raw.transactions SET amount = CAST(amount / 2 AS DECIMAL(18, 2))")
    yesterday = day - timedelta(days=1)
    copy_raw(source, prepared, through=yesterday)
    log.warning(
        "generated %d transactions over %d days in %.0fs",
        rows,
        HISTORY_DAYS + 1,
        time.perf_counter() - started,
    )
    url, _ = localredis.start(workdir / "redis-prepared", persist=False)
    try:
        with pipeline_env(prepared, url, env={"DBT_PROJECT_DIR": str(project)}):
            started = time.perf_counter()
            nightly.build_features(yesterday.isoformat(), full_refresh=True)
            log.warning("history built up to %s in %.0fs", yesterday, time.perf_counter() - started)
            stage = Stages(f"preparation: night {yesterday}")
            after_features(
                stage,
                prepared,
                yesterday,
                f"bench-nightly-{yesterday}",
                candidates=[PREPARED_CANDIDATE],
                train=True,
            )
    finally:
        localredis.stop(url)
    _land(source, prepared, day)
    source.unlink()
    return prepared


def _library_night(settings: Settings, day: date, project: Path) -> tuple[float, dict]:
    """Wall seconds of the night of D as library calls in one process, and each stage's."""
    url, _ = localredis.start(settings.data_dir.parent / "redis-library", persist=False)
    env = {"DBT_PROJECT_DIR": str(project), "MLPIPELINE_TRAINING_PARALLEL_TASKS": "1"}
    iso, run_id = day.isoformat(), f"bench-nightly-library-{day}"
    stage = Stages(f"library night {day}")
    try:
        with pipeline_env(settings, url, env=env):
            started = time.perf_counter()
            for dataset in nightly.DATASETS:
                if not stage("ingest", nightly.landing_ready, dataset, iso):
                    raise RuntimeError(f"{dataset} for {day} is not landed")
                prepared = stage("ingest", nightly.prepare, dataset, iso)
                stage("ingest", nightly.load, prepared, run_id)
                stage("ingest", nightly.check_raw, prepared, run_id)
                stage("ingest", nightly.promote, prepared, run_id)
            stage("dbt_build", nightly.build_features, iso)
            after_features(stage, settings, day, run_id, train=None)
            wall = time.perf_counter() - started
    finally:
        localredis.stop(url)
    return wall, stage.seconds


def _stage_of(task_id: str) -> str:
    """The DAG stage a task belongs to: its task group, or the task itself."""
    group = task_id.partition(".")[0]
    return "ingest" if group.startswith("ingest_") else group


def _airflow_night(settings: Settings, day: date, project: Path) -> tuple[float, list[dict]]:
    """Seconds from the start to the end of fraud_nightly's run for D, and its task instances."""
    url, _ = localredis.start(settings.data_dir.parent / "redis-airflow", persist=False)
    try:
        with pipeline_env(settings, url, env={"DBT_PROJECT_DIR": str(project)}):
            # Only the benchmark's manual run: unpausing must not add a scheduled one for the
            # day that ended last (it would wait for that day's landing, and run first).
            run_id, state, env = run_in_airflow(
                settings, DAG, day, {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
            )
    finally:
        localredis.stop(url)
    tasks = local_airflow.task_instances(DAG, day, env, run_id)
    failed = sorted(ti["task_id"] for ti in tasks if ti["state"] not in {"success", "skipped"})
    if state != "success" or failed:
        raise RuntimeError(
            f"{DAG} for {day} ended {state} (tasks not successful: {failed}); task logs under "
            f"{env['AIRFLOW_HOME']}/logs"
        )
    run = next(
        r for r in local_airflow.cli_json(["dags", "list-runs", DAG], env) if r["run_id"] == run_id
    )
    span = _seconds(run["start_date"], run["end_date"])
    return span, tasks


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _idle(tasks: list[dict], span: float) -> float:
    """Seconds of the run during which no task was running (scheduling, queueing)."""
    intervals = sorted(
        (datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
        for ti in tasks
        if ti.get("start_date") and ti.get("end_date")
    )
    covered, end = 0.0, None
    for start, stop in intervals:
        if end is None or start > end:
            covered += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            covered += (stop - end).total_seconds()
            end = stop
    return span - covered


def _table(library: dict[str, float], tasks: list[dict]) -> str:
    """Each stage's seconds: the library's, the sum of the Airflow tasks' run times, and the span
    from the first of them starting to the last one ending."""
    by_stage: dict[str, list[dict]] = {}
    for ti in tasks:
        if ti.get("start_date") and ti.get("end_date"):
            by_stage.setdefault(_stage_of(ti["task_id"]), []).append(ti)
    grouped: dict[str, float] = {}
    for name, seconds in library.items():
        stage = LIBRARY_STAGE.get(name, name)
        grouped[stage] = grouped.get(stage, 0.0) + seconds
    lines = [
        "| stage | library s | Airflow tasks s | Airflow span s | tasks |",
        "|---|---|---|---|---|",
    ]
    names = [*STAGES, *(s for s in by_stage if s not in STAGES)]
    for name in names:
        runs = by_stage.get(name, [])
        busy = sum(_seconds(ti["start_date"], ti["end_date"]) for ti in runs)
        span = (
            _seconds(min(ti["start_date"] for ti in runs), max(ti["end_date"] for ti in runs))
            if runs
            else 0.0
        )
        lines.append(
            f"| {name} | {grouped.get(name, 0.0):.1f} | {busy:.1f} | {span:.1f} | {len(runs)} |"
        )
    return "\n".join(lines)


def run(workdir: Path) -> list[Result]:
    # The Airflow run's progress (tasks done, seconds) every 10 s.
    logging.getLogger(local_airflow.__name__).setLevel(logging.INFO)
    day = FIRST_DAY + timedelta(days=HISTORY_DAYS)
    project = _dbt_project(workdir)
    prepared = _prepare(workdir, day, project)
    library_side = copy_state(prepared, workdir / "library")
    airflow_side = copy_state(prepared, workdir / "airflow")

    library, stages = _library_night(library_side, day, project)
    log.warning("library calls, night of %s: %.1fs", day, library)
    in_airflow, tasks = _airflow_night(airflow_side, day, project)
    log.warning("%s run by the scheduler (LocalExecutor), night of %s: %.1fs", DAG, day, in_airflow)
    for ti in sorted(tasks, key=lambda t: t.get("start_date") or ""):
        mapped = str(ti.get("map_index")) not in {"", "-1", "None"}
        name = ti["task_id"] + (f"[{ti['map_index']}]" if mapped else "")
        seconds = _seconds(ti.get("start_date"), ti.get("end_date"))
        log.warning("  %-60s %-10s %7.1f", name, ti["state"], seconds)
    log.warning(
        "%s: %.1fs of the run with no task running (before the first, between, after the last)",
        DAG,
        _idle(tasks, in_airflow),
    )
    log.warning("library stages (s): %s", ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    log.warning("per stage, night of %s:\n%s", day, _table(stages, tasks))

    history = HISTORY_DAYS - RECENT
    size = (
        f"{DAY_ROWS:,}-transaction day, {CUSTOMERS:,} customers, history {history} days x "
        f"{HISTORY_ROWS:,} + {RECENT} x {DAY_ROWS:,}, training window {WINDOW} days"
    )
    return [
        Result.at_most(
            f"whole {DAG} ({size}), scheduler + LocalExecutor vs the same stages as library "
            "calls in one process",
            in_airflow,
            "s",
            library,
            TARGET,
        )
    ]
