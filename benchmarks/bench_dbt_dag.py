"""The dbt part of fraud_nightly inside Airflow against one `dbt build` of the same day from the
command line, on the same warehouse state.

History: DAYS days of ROWS_PER_DAY transactions (default 30 x 100,000; bench_features' generator,
written straight into the raw layer), built by one full-refresh `dbt build` up to day D-1 (the
last day's raw rows are loaded, not built). The warehouse is then copied twice, so both measured
runs start from identical state and build day D incrementally:

- Airflow: `airflow dags test fraud_nightly D` with every task but `resolve_day` and the
  `dbt_build` group's marked successful (`--mark-success-pattern`): the Cosmos tasks as the DAG
  renders them (one `dbt build --select <model>` per model with its tests, one per test spanning
  models, one per source's freshness), each its own dbt invocation, run one after another in the
  `dags test` process. The figure is the span from the first dbt task's start to the last one's
  end, as the metadata DB records them.
- Command line: `dbt build --vars '{processing_day: D}'` as a subprocess against the prod target,
  after an untimed `dbt parse` in the same target folder (a repeat run in a deployed project
  starts from dbt's partial-parse state, as Cosmos' tasks do from its cache).

`dags test` starts no task process and parses no DAG per task, so the figure is a lower bound of
what the scheduler with the LocalExecutor adds. `BENCH_DBT_DAG_DAYS` / `BENCH_DBT_DAG_ROWS_PER_DAY`
shrink the data for a quick look; the README's figures come from the default size. Run: `make
bench ONLY=bench_dbt_dag` (a few minutes on two cores).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from benchmarks.bench_features import FIRST_DAY, copy_raw, generate
from benchmarks.harness import Result
from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.devtools import local_airflow
from mlpipeline.features import transform
from tests.lake_copy import copy_warehouse

log = logging.getLogger(__name__)

ROWS_PER_DAY = int(os.environ.get("BENCH_DBT_DAG_ROWS_PER_DAY", 100_000))
DAYS = int(os.environ.get("BENCH_DBT_DAG_DAYS", 30))
DAG = "fraud_nightly"
GROUP = "dbt_build."
# fullmatch: every task id but resolve_day (the dbt tasks' vars pull D from it) and the group's.
NOT_DBT = r"(?!resolve_day$|dbt_build\.).*"


def _history(workdir: Path, day: date) -> Settings:
    """A warehouse with raw data up to D and dbt's models built up to D-1 (full refresh)."""
    prepared = Settings.under(workdir / "prepared")
    prepared.data_dir.mkdir(parents=True)
    warehouse.create(prepared)
    generated = workdir / "generated.duckdb"
    rows = generate(generated, day, ROWS_PER_DAY)
    copy_raw(generated, prepared)
    generated.unlink()
    started = time.perf_counter()
    transform.build(day - timedelta(days=1), settings=prepared, full_refresh=True)
    log.warning(
        "history: %d transactions over %d days, built up to %s in %.0fs",
        rows,
        DAYS,
        day - timedelta(days=1),
        time.perf_counter() - started,
    )
    return prepared


def _copy(prepared: Settings, data_dir: Path) -> Settings:
    copy = Settings.under(data_dir)
    copy_warehouse(prepared, copy)
    return copy


def _command_line(settings: Settings, day: date) -> tuple[float, dict[str, float]]:
    """Seconds of one `dbt build` of day D in a subprocess, and each node's own seconds."""
    project = str(settings.dbt_project_dir)
    work = settings.data_dir / "dbt-cli"
    common = [
        "--project-dir", project, "--profiles-dir", project, "--target", "prod",
        "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
    ]  # fmt: skip
    dbt = str(Path(sys.executable).parent / "dbt")
    env = {**os.environ, **transform.prod_env(settings)}
    subprocess.run([dbt, "parse", *common], env=env, check=True, capture_output=True)
    command = [dbt, "build", "--vars", json.dumps({"processing_day": day.isoformat()}), *common]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"`dbt build` of {day} from the command line failed (exit {done.returncode}); see "
            f"{work / 'logs' / 'dbt.log'}:\n{done.stdout[-3000:]}"
        )
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    return seconds, {r["unique_id"]: r["execution_time"] for r in results}


def _in_airflow(settings: Settings, day: date) -> list[dict]:
    """The dbt tasks of fraud_nightly's run for D under `airflow dags test` (the rest marked
    successful): task instances with start and end as the metadata DB recorded them."""
    env = local_airflow.airflow_env(settings)
    local_airflow.init(env)
    code = local_airflow.dags_test(DAG, day, env, mark_success=NOT_DBT)
    tasks = [
        ti for ti in local_airflow.task_instances(DAG, day, env) if ti["task_id"].startswith(GROUP)
    ]
    failed = sorted(ti["task_id"] for ti in tasks if ti["state"] != "success")
    if code != 0 or failed or not tasks:
        raise RuntimeError(
            f"the dbt tasks of {DAG} for {day} did not all succeed (exit {code}): "
            f"{failed or 'no dbt task ran'}; task logs under {env['AIRFLOW_HOME']}/logs"
        )
    return tasks


def _seconds(ti: dict) -> float:
    return (
        datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])
    ).total_seconds()


def _snapshot_rows(settings: Settings, day: date) -> int:
    with warehouse.connect(settings, read_only=True) as con:
        return con.execute(
            "SELECT count(*) FROM features.customer_snapshot WHERE cutoff_date = ?", [day]
        ).fetchone()[0]


def run(workdir: Path) -> list[Result]:
    day = FIRST_DAY + timedelta(days=DAYS - 1)
    prepared = _history(workdir, day)
    cli_side, dag_side = _copy(prepared, workdir / "cli"), _copy(prepared, workdir / "dag")

    cli, nodes = _command_line(cli_side, day)
    log.warning("one `dbt build` of %s from the command line: %.1fs (%d nodes)", day, cli,
                len(nodes))  # fmt: skip
    tasks = _in_airflow(dag_side, day)
    starts = [datetime.fromisoformat(ti["start_date"]) for ti in tasks]
    ends = [datetime.fromisoformat(ti["end_date"]) for ti in tasks]
    span = (max(ends) - min(starts)).total_seconds()
    busy = sum(_seconds(ti) for ti in tasks)
    for ti in sorted(tasks, key=lambda t: t["start_date"]):
        log.warning("  %-70s %6.1fs", ti["task_id"], _seconds(ti))
    log.warning(
        "dbt part of %s in Airflow: %d tasks, %.1fs from the first start to the last end, "
        "%.1fs inside tasks; against the command line's %.1fs that is %.1fs a task",
        DAG, len(tasks), span, busy, cli, (busy - cli) / len(tasks),
    )  # fmt: skip
    built = _snapshot_rows(cli_side, day), _snapshot_rows(dag_side, day)
    if built[0] != built[1] or not built[0]:
        raise RuntimeError(
            f"the two builds of {day} differ: customer_snapshot has {built[0]} rows from the "
            f"command line, {built[1]} from Airflow"
        )
    size = f"{DAYS}d x {ROWS_PER_DAY:,} txn/day, {len(tasks)} dbt tasks"
    return [
        Result.at_most(f"dbt part of {DAG} in Airflow vs one CLI dbt build of the day ({size})",
                       span, "s", cli, 1.2),
    ]  # fmt: skip
