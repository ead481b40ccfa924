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
what the scheduler adds. The variants (BENCH_DBT_DAG_VARIANTS, each on its own copy, a failed one
logged and left out) run the nightly cut down to its dbt group (benchmarks/dags) with the
scheduler, the LocalExecutor and a triggerer: `local` as the nightly renders it, `watcher...` in
Cosmos' ExecutionMode.WATCHER (one `dbt build` by a producer task, one consumer task per model
and test reporting its node's result) with flags (FLAGS: consumers outside the one-slot
`warehouse` pool, the tests spanning several models kept among a model's tests instead of
detached into tasks running dbt themselves, no source tasks, consumers polling every second).
The Cosmos cache under /tmp/cosmos is shared by the copies, whose profiles differ (paths): the
first dbt invocation of each side parses the project in full (about 2 s), as after a deploy.
`BENCH_DBT_DAG_DAYS` / `BENCH_DBT_DAG_ROWS_PER_DAY` shrink the data for a quick look; the
README's figures come from the default size. Run: `make bench ONLY=bench_dbt_dag` (9 to 15
minutes on two cores).
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
from benchmarks.nightly_stages import run_in_airflow
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
# How the dbt group runs: the nightly under `dags test`, then the variants (`_in_airflow`).
MODES = {"local": "Cosmos LOCAL", "watcher": "Cosmos WATCHER"}
# A variant is a mode, then flags joined by `_` (benchmarks/dags/nightly_dbt_only.py).
FLAGS = {
    "unpooled": "consumers outside the pool",
    "attached": "multi-model tests attached",
    "nosources": "no source tasks (no freshness pre-check)",
    "poke1": "consumers polling every second",
}
VARIANTS_RUN = [
    v
    for v in os.environ.get(
        "BENCH_DBT_DAG_VARIANTS",
        "local,watcher_attached_unpooled,watcher_attached_unpooled_poke1,"
        "watcher_attached_unpooled_nosources_poke1",
    ).split(",")
    if v
]
VARIANT_DAGS = Path(__file__).resolve().parent / "dags"
NOT_DBT = r"(?!resolve_day$|dbt_build\.).*"


def describe(variant: str | None) -> str:
    """How a variant runs the dbt group; None is the nightly itself under `dags test`."""
    if variant is None:
        return "in Airflow, dags test"
    mode, *flags = variant.split("_")
    return ", ".join(["scheduler + LocalExecutor", MODES[mode], *(FLAGS[f] for f in flags)])


def _history(workdir: Path, day: date) -> Settings:
    """A warehouse with raw data up to D and dbt's models built up to D-1 (full refresh)."""
    prepared = Settings.under(workdir / "prepared")
    prepared.data_dir.mkdir(parents=True)
    warehouse.create(prepared)
    generated = workdir / "generated.duckdb"
    rows = generate(generated, day, rows=ROWS_PER_DAY, customers=max(ROWS_PER_DAY // 4, 1_000))
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


def _work_by_task(target: Path) -> dict[str, float]:
    """Seconds dbt spent in the nodes of a build (run_results.json), keyed as Cosmos names the
    task that runs them: a model with the tests on it alone, a test spanning models by itself."""
    manifest = json.loads((target / "manifest.json").read_text())
    nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}
    work: dict[str, float] = {}
    for result in json.loads((target / "run_results.json").read_text())["results"]:
        node = nodes[result["unique_id"]]
        parents = [n for n in node["depends_on"]["nodes"] if n.startswith("model.")]
        tested = node["resource_type"] in {"test", "unit_test"} and len(parents) == 1
        owner = nodes[parents[0]] if tested else node
        work[owner["name"]] = work.get(owner["name"], 0.0) + result["execution_time"]
    return work


def _command_line(settings: Settings, day: date) -> tuple[float, dict[str, float]]:
    """Seconds of one `dbt build` of day D in a subprocess, and its nodes' seconds by task
    (`_work_by_task`)."""
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
    return seconds, _work_by_task(work / "target")


def _in_airflow(settings: Settings, day: date, mode: str | None = None) -> list[dict]:
    """The dbt tasks of fraud_nightly's run for D, with start and end as the metadata DB
    recorded them. Without `mode`: the nightly itself under `airflow dags test`, the rest marked
    successful, every task in the `dags test` process. With `mode` (a variant): the
    nightly cut down to its dbt group in that Cosmos mode (benchmarks/dags), triggered for D
    and run by the scheduler with the LocalExecutor (each task its own process; the SQLite
    catalog's `warehouse` pool lets one dbt task run at a time), with a triggerer."""
    env = local_airflow.airflow_env(settings)
    run_id = None
    if mode is None:
        local_airflow.init(env)
        code = local_airflow.dags_test(DAG, day, env, mark_success=NOT_DBT)
    else:
        extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(VARIANT_DAGS), "BENCH_DBT_DAG_MODE": mode}
        run_id, state, env = run_in_airflow(settings, DAG, day, extra)
        code = 0 if state == "success" else 1
    tasks = [
        ti
        for ti in local_airflow.task_instances(DAG, day, env, run_id)
        if ti["task_id"].startswith(GROUP)
    ]
    failed = sorted(ti["task_id"] for ti in tasks if ti["state"] != "success")
    if code != 0 or failed or not tasks:
        raise RuntimeError(
            f"the dbt tasks of {DAG} ({mode or 'dags test'}) for {day} did not all succeed "
            f"(exit {code}): {failed or 'no dbt task ran'}; task logs under "
            f"{env['AIRFLOW_HOME']}/logs"
        )
    return tasks


def _seconds(ti: dict) -> float:
    return (
        datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])
    ).total_seconds()


def _node_name(task_id: str) -> str:
    """The dbt node a Cosmos task is named after: `<model>_model_build`, `<test>_test`,
    `<source>_source` (freshness, which `dbt build` does not run)."""
    name = task_id.removeprefix(GROUP)
    return (
        name.removesuffix("_model_build")
        if name.endswith("_model_build")
        else name.rpartition("_")[0]
    )


def _snapshot_rows(settings: Settings, day: date) -> int:
    with warehouse.connect(settings, read_only=True) as con:
        return con.execute(
            "SELECT count(*) FROM features.customer_snapshot WHERE cutoff_date = ?", [day]
        ).fetchone()[0]


def _measured(
    prepared: Settings, workdir: Path, day: date, mode: str | None, cli: float, work: dict
) -> tuple[float, int]:
    """Seconds from the first dbt task's start to the last one's end on a fresh copy of the
    history, and the number of tasks; logs each task's time beside its nodes' in the command
    line's build."""
    side = _copy(prepared, workdir / (mode or "dags-test"))
    tasks = _in_airflow(side, day, mode)
    starts = [datetime.fromisoformat(ti["start_date"]) for ti in tasks]
    ends = [datetime.fromisoformat(ti["end_date"]) for ti in tasks]
    span = (max(ends) - min(starts)).total_seconds()
    busy = sum(_seconds(ti) for ti in tasks)
    in_nodes = sum(work.values())
    log.warning("%s:\n  %-70s %7s %7s %8s", describe(mode), "task", "task s", "nodes s",
                "overhead")  # fmt: skip
    for ti in sorted(tasks, key=lambda t: t["start_date"]):
        nodes = work.get(_node_name(ti["task_id"]), 0.0)
        log.warning("  %-70s %7.1f %7.1f %8.1f", ti["task_id"], _seconds(ti), nodes,
                    _seconds(ti) - nodes)  # fmt: skip
    log.warning(
        "dbt part of %s, %s: %d tasks, %.1fs from the first start to the last end, %.1fs inside "
        "tasks; against the command line's %.1fs that is %.1fs a task (%.1fs a task beside the "
        "nodes' own time; the command line's own beside its nodes: %.1fs)",
        DAG, describe(mode), len(tasks), span, busy, cli, (busy - cli) / len(tasks),
        (busy - in_nodes) / len(tasks), cli - in_nodes,
    )  # fmt: skip
    return span, len(tasks)


def run(workdir: Path) -> list[Result]:
    day = FIRST_DAY + timedelta(days=DAYS - 1)
    prepared = _history(workdir, day)
    cli_side = _copy(prepared, workdir / "cli")
    cli, work = _command_line(cli_side, day)
    log.warning("one `dbt build` of %s from the command line: %.1fs, %.1fs of it in its nodes",
                day, cli, sum(work.values()))  # fmt: skip
    expected = _snapshot_rows(cli_side, day)
    results = []
    for mode in [None, *VARIANTS_RUN]:
        try:
            span, count = _measured(prepared, workdir, day, mode, cli, work)
            built = _snapshot_rows(Settings.under(workdir / (mode or "dags-test")), day)
            if built != expected or not built:
                raise RuntimeError(
                    f"the builds of {day} differ: customer_snapshot has {expected} rows from the "
                    f"command line, {built} from Airflow ({describe(mode)})"
                )
        except Exception:
            if mode is None:
                raise
            # The variants show what would meet the target; the nightly's own figure stands.
            log.exception("the %s variant failed; its row is left out", describe(mode))
            continue
        size = f"{DAYS}d x {ROWS_PER_DAY:,} txn/day, {count} dbt tasks"
        results.append(Result.at_most(
            f"dbt part of {DAG} ({describe(mode)}) vs one CLI dbt build of the day ({size})",
            span, "s", cli, 1.2,
        ))  # fmt: skip
    return results
