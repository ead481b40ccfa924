"""Build the dbt feature project (dbt_project/) for a processing day, in-process.

dbt runs through `dbtRunner` so its events reach this module's logger (and so the Airflow task
log) instead of a separate console. A failed build raises `DbtBuildError` naming every failing
model and test with its failing row count and the first failing rows, so on-call sees what broke
without opening dbt.log.

In Airflow the dbt nodes are tasks rendered by Cosmos from a manifest built ahead
(`ensure_manifest`, run at setup), so parsing the DAG never runs dbt; after each node
`after_dbt_node` releases the warehouse and reports failing tests with their rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import tenacity

from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.core.retry import retrying
from mlpipeline.features.dbt_failures import (
    FAILED_STATUSES,
    DbtBuildError,
    NodeResult,
    failing_rows,
    node_results,
)
from mlpipeline.features.dbt_project import (
    MANIFEST_HASH_FILE,
    manifest_hash,
    manifest_is_current,
    manifest_path,
    project_root,
)
from mlpipeline.warehouse import lake

log = logging.getLogger(__name__)
dbt_log = logging.getLogger(f"{__name__}.dbt")

# Builds of one warehouse by several processes: a model whose commit conflicts with another
# writer's is refused whole, and the build runs again.
BUILD_ATTEMPTS = 5
DBT_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _forward_event(event: Any) -> None:
    """dbtRunner callback: re-emit a dbt event on the Python log at its own level."""
    level = DBT_LEVELS.get(event.info.level, logging.INFO)
    if dbt_log.isEnabledFor(level) and event.info.msg:
        dbt_log.log(level, "%s", event.info.msg)


def _release_warehouse() -> None:
    """Close dbt-duckdb's DuckDB instance, which otherwise stays open for the process's life.

    While it is open no other process can open the warehouse, and this one cannot open it
    read-only, so every build releases it before returning.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    try:
        environment = DuckDBConnectionManager.env()
    except Exception:  # noqa: BLE001 - dbt-duckdb raises a bare Exception before any connection
        return
    DuckDBConnectionManager.close_all_connections()
    environment.close()


@dataclass(frozen=True)
class BuildAttempt:
    """One `dbt build` invocation and what its nodes reported."""

    outcome: Any
    work_dir: Path
    elapsed: float
    nodes: list[NodeResult]
    failures: list[NodeResult]

    @property
    def only_lost_races(self) -> bool:
        """Every failure is a commit refused for another writer's: a rerun will pass."""
        return bool(self.failures) and all(lake.lost_a_race(n.message) for n in self.failures)


@dataclass(frozen=True)
class Target:
    """Where a dbt target writes: the profile's environment and a name for messages; `dev` for
    the analysts' own lake (see mlpipeline.warehouse.dev_db), which reads production read-only."""

    name: str
    env: dict[str, str]
    where: str
    dev: bool


def prod_env(settings: Settings) -> dict[str, str]:
    """The variables the profile's prod target reads: the warehouse and the extension folder."""
    from mlpipeline.warehouse import duckdb_extensions

    return {
        "WAREHOUSE_CATALOG": settings.warehouse_catalog,
        "WAREHOUSE_DATA_PATH": settings.warehouse_data_path,
        "DUCKDB_EXTENSION_DIRECTORY": str(duckdb_extensions.directory()),
    }


def _target(settings: Settings, target: str) -> Target:
    """prod is the pipeline's warehouse; dev is the analysts' lake, production attached
    read-only. The profile gets absolute locations, so dbt does not depend on the cwd."""
    from mlpipeline import warehouse
    from mlpipeline.warehouse import dev_db

    if target == "prod":
        return Target(target, prod_env(settings), warehouse.describe(settings), dev=False)
    if target == "dev":
        dev = dev_db.dev_settings(settings)
        env = {
            "DEV_WAREHOUSE_CATALOG": dev.warehouse_catalog,
            "WAREHOUSE_READER_CATALOG": dev_db.reader_catalog(settings),
            "DUCKDB_EXTENSION_DIRECTORY": prod_env(settings)["DUCKDB_EXTENSION_DIRECTORY"],
        }
        where = f"{warehouse.describe(dev)}, reading {warehouse.describe(settings)} read-only"
        return Target(target, env, where, dev=True)
    raise ValueError(f"unknown dbt target {target!r}; dbt_project/profiles.yml has dev and prod")


@contextmanager
def _dbt_environment(variables: dict[str, str]) -> Iterator[None]:
    """Point the profile at the warehouse; afterwards release it and restore the env."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        _release_warehouse()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _invoke(
    command: list[str],
    settings: Settings,
    target: str,
    variables: dict[str, Any],
) -> tuple[Any, Target, Path, float]:
    """Run one dbt command in-process against a target's warehouse, released afterwards.

    dbt's target/ and logs/ go under `<data_dir>/dbt/<target>/`. Returns dbt's outcome, the
    target, the work folder and the elapsed seconds.
    """
    from dbt.cli.main import dbtRunner

    where = _target(settings, target)
    project_dir = settings.dbt_project_dir
    work_dir = settings.data_dir / "dbt" / target
    args = [
        *command,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target", target,
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
        "--log-level", "none",
        "--log-level-file", "debug",
        "--no-use-colors",
        "--vars", json.dumps(variables),
    ]  # fmt: skip
    started = time.monotonic()
    if where.dev:
        from mlpipeline.warehouse.dev_db import create_dev

        create_dev(settings)
    with _dbt_environment(where.env):
        outcome = dbtRunner(callbacks=[_forward_event]).invoke(args)
    return outcome, where, work_dir, time.monotonic() - started


def build(
    day: str | date,
    *,
    settings: Settings | None = None,
    full_refresh: bool = False,
    target: str = "prod",
    select: str | Sequence[str] | None = None,
    variables: dict[str, Any] | None = None,
    tests: bool = True,
) -> dict[str, Any]:
    """Run `dbt build` for processing day D; raise `DbtBuildError` if any model or test failed.

    Incremental models recompute only cutoff D; `full_refresh` rebuilds every cutoff from the
    first raw day to D (needed after a feature is added or retyped). `select` narrows the build
    with dbt's selection syntax; `variables` adds dbt vars (e.g. training_cutoff); without
    `tests` only the models run (`dbt run`, e.g. to time them). prod writes
    the pipeline's warehouse, dev the analysts' copy (see `_target`). Returns a JSON-ready
    summary (for XCom): day, target, node count, warnings, elapsed seconds and the hash of the
    dbt code that built the data.
    """
    settings = settings or Settings.from_env()
    processing_day = parse_day(day)
    project_dir = settings.dbt_project_dir
    command = ["build" if tests else "run", *(["--full-refresh"] if full_refresh else [])]
    if select:
        command += ["--select", *([select] if isinstance(select, str) else select)]
    where = f"processing day {processing_day} (target {target}, {_target(settings, target).where})"
    log.info("dbt build for %s%s", where, ", full refresh" if full_refresh else "")
    dbt_vars = {**(variables or {}), "processing_day": processing_day.isoformat()}

    def attempt() -> BuildAttempt:
        outcome, dbt_target, work_dir, elapsed = _invoke(command, settings, target, dbt_vars)
        nodes = node_results(outcome.result, settings, dev=dbt_target.dev)
        failures = [n for n in nodes if n.status in FAILED_STATUSES]
        return BuildAttempt(outcome, work_dir, elapsed, nodes, failures)

    def on_retry(number: int, _: float, result: Future) -> None:
        raced = result.result().failures
        log.warning(
            "dbt build for %s: %s lost a commit race with another writer (%s); attempt %d/%d, "
            "running the build again",
            where,
            ", ".join(n.name for n in raced),
            raced[0].message.strip().splitlines()[-1],
            number,
            BUILD_ATTEMPTS,
        )

    # Each model replaces its own rows (day D, or all of them): running the build again is
    # safe when every failure lost a commit race, and the other writer has committed by then.
    built = retrying(
        attempts=BUILD_ATTEMPTS,
        wait=tenacity.wait_random_exponential(multiplier=1, max=8),
        retry=tenacity.retry_if_result(lambda done: done.only_lost_races),
        on_retry=on_retry,
    )(attempt)
    outcome, work_dir, elapsed, nodes, failures = (
        built.outcome,
        built.work_dir,
        built.elapsed,
        built.nodes,
        built.failures,
    )
    hint = (
        f"full dbt log: {work_dir / 'logs' / 'dbt.log'}; inspect a failing test's rows with "
        f"`dbt test --select <test> --store-failures` in {project_dir}"
    )
    if outcome.exception is not None:
        raise DbtBuildError(
            f"dbt build for {where} could not run: {outcome.exception}. {hint}", failures
        ) from outcome.exception
    if failures or not outcome.success:
        skipped = sum(n.status == "skipped" for n in nodes)
        lines = "\n".join(f"  - {n.describe()}" for n in failures)
        raise DbtBuildError(
            f"dbt build for {where} failed: {len(failures)} failed, {skipped} skipped "
            f"after {elapsed:.1f}s:\n{lines}\n{hint}",
            failures,
        )
    warnings = [n.describe() for n in nodes if n.status == "warn"]
    for warning in warnings:
        log.warning("dbt build for %s: %s", where, warning)
    log.info("dbt build for %s passed: %d nodes in %.1fs", where, len(nodes), elapsed)
    return {
        "processing_day": processing_day.isoformat(),
        "target": target,
        "full_refresh": full_refresh,
        "nodes": len(nodes),
        "warnings": warnings,
        "elapsed_seconds": round(elapsed, 1),
        "dbt_manifest_hash": manifest_hash(project_dir),
    }


def source_freshness(
    day: str | date, *, settings: Settings | None = None, target: str = "prod"
) -> dict[str, dict[str, Any]]:
    """`dbt source freshness` as of processing day D: per source, its status (pass / warn) and
    the age in hours of its newest row before cutoff_ts(D), measured at cutoff_ts(D)
    (macros/freshness.sql), so the answer does not depend on when it runs. Sources declare
    warn_after only; a source that cannot be read raises `DbtBuildError`."""
    settings = settings or Settings.from_env()
    processing_day = parse_day(day)
    outcome, _, work_dir, _ = _invoke(
        ["source", "freshness"], settings, target, {"processing_day": processing_day.isoformat()}
    )
    found: dict[str, dict[str, Any]] = {}
    for item in getattr(outcome.result, "results", None) or []:
        name = f"{item.node.source_name}.{item.node.name}"
        status = getattr(item.status, "value", str(item.status))
        age = getattr(item, "age", None)
        found[name] = {"status": status, "age_hours": None if age is None else age / 3600}
        if status == "warn":
            log.warning(
                "source %s is stale for processing day %s: newest row %.1f h before its cutoff",
                name,
                processing_day,
                age / 3600,
            )
    broken = {n: f for n, f in found.items() if f["status"] not in {"pass", "warn"}}
    if outcome.exception is not None or broken or not found:
        raise DbtBuildError(
            f"dbt source freshness for {processing_day} failed: {outcome.exception or broken}; "
            f"see {work_dir / 'logs' / 'dbt.log'}",
            [],
        )
    return found


def ensure_manifest(project_dir: Path | str | None = None) -> Path:
    """`dbt parse` the project into `manifest_path()` unless it is current; returns the path.

    Setup runs this (mlpipeline.devtools.local_airflow.init; a deployment runs it when it ships
    new dbt
    code), so parsing the DAG only reads a JSON file. The manifest depends on the code alone:
    parsing opens no warehouse. It is written aside and moved in place, so a DAG parse never
    reads a half-written file.
    """
    import shutil
    import tempfile

    from dbt.cli.main import dbtRunner

    root = project_root(project_dir)
    target = manifest_path(root)
    if manifest_is_current(root):
        return target
    code = manifest_hash(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".parse-") as work:
        args = [
            "parse",
            "--project-dir", str(root),
            "--profiles-dir", str(root),
            "--target", "prod",
            "--target-path", str(Path(work) / "target"),
            "--log-path", str(Path(work) / "logs"),
            "--log-level", "none",
            "--no-use-colors",
            "--no-partial-parse",
        ]  # fmt: skip
        started = time.monotonic()
        with _dbt_environment(prod_env(Settings.under(Path(work)))):
            outcome = dbtRunner(callbacks=[_forward_event]).invoke(args)
        if not outcome.success:
            log_file = target.parent / "parse.log"
            shutil.copyfile(Path(work) / "logs" / "dbt.log", log_file)
            raise DbtBuildError(
                f"dbt parse of {root} failed: {outcome.exception}. Fix the project (dbt's log: "
                f"{log_file}); the nightly's dbt tasks are rendered from its manifest",
                [],
            )
        os.replace(Path(work) / "target" / "manifest.json", target)
    (target.parent / MANIFEST_HASH_FILE).write_text(code + "\n")
    log.info("dbt manifest for Airflow written to %s in %.1fs", target, time.monotonic() - started)
    return target


def warn_if_manifest_stale(project_dir: Path | str | None = None) -> bool:
    """Before a dbt task of the nightly: whether the manifest its DAG was rendered from matches
    the dbt code this worker runs; logs, in the task's log, what to do when it does not.

    A warning, not a failure: dbt runs the current code either way, and a deployment ships the
    manifest with that code (the image builds it); a stale one means a checkout's dbt code was
    edited after setup, and the DAG lacks or still shows the changed models and tests."""
    root = project_root(project_dir)
    if manifest_is_current(root):
        return True
    log.warning(
        "%s was parsed from older dbt code than %s: this DAG shows the old models and tests. "
        "Run `mlpipeline dbt-manifest` (setup does), then let the DAG be parsed again",
        manifest_path(root),
        root,
    )
    return False


def after_dbt_node(project_dir: str, **_: Any) -> None:
    """Cosmos callback after each dbt node's invocation, whether it passed or failed.

    Cosmos runs dbt in the task's process (dbtRunner), and dbt-duckdb keeps the warehouse open
    there; releasing it lets the next task (under `airflow dags test`, the same process) and
    other processes open the file. Then each failed or warning test of the invocation is logged
    with its failing row count and first rows, read from the artefacts dbt left in
    `project_dir` (Cosmos' copy of the project).
    """
    _release_warehouse()
    target = Path(project_dir) / "target"
    results_file = target / "run_results.json"
    if not results_file.is_file():
        return
    results = json.loads(results_file.read_text()).get("results", [])
    manifest_file = target / "manifest.json"
    nodes = json.loads(manifest_file.read_text())["nodes"] if manifest_file.is_file() else {}
    settings = Settings.from_env()
    for result in results:
        unique_id = result.get("unique_id", "")
        status = result.get("status")
        if not unique_id.startswith("test.") or status not in {"fail", "warn", "error"}:
            continue
        node = nodes.get(unique_id, {})
        sample: tuple[str, ...] = ()
        if status == "fail" and result.get("compiled_code"):
            sample = failing_rows(settings, result["compiled_code"], node.get("column_name"))
        described = NodeResult(
            node.get("name", unique_id),
            "test",
            status,
            result.get("failures"),
            result.get("message") or "",
            sample,
        ).describe()
        (log.warning if status == "warn" else log.error)("dbt %s", described)
