"""Build the dbt feature project (dbt_project/) for a processing day, in-process.

dbt runs through `dbtRunner` so its events reach this module's logger (and so the Airflow task
log) instead of a separate console. A failed build raises `DbtBuildError` naming every failing
model and test with its failing row count and the first failing rows, so on-call sees what broke
without opening dbt.log. The online feature set is declared once, in the snapshot model's YAML;
`online_spec()` reads it from there for the exporter, the trainer and the online reader.

In Airflow the dbt nodes are tasks rendered by Cosmos from a manifest built ahead
(`ensure_manifest`, run at setup), so parsing the DAG never runs dbt; after each node
`after_dbt_node` releases the warehouse and reports failing tests with their rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.warehouse import lake

log = logging.getLogger(__name__)
dbt_log = logging.getLogger(f"{__name__}.dbt")

SNAPSHOT_MODEL = "customer_snapshot"
SNAPSHOT_YAML = Path("models/features/customer_snapshot.yml")
# What defines the data dbt builds; profiles.yml (where it connects) and target/ are left out.
CODE_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")
CODE_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
FAILED_STATUSES = {"error", "fail", "runtime error"}
# Builds of one warehouse by several processes: a model whose commit conflicts with another
# writer's is refused whole, and the build runs again.
BUILD_ATTEMPTS = 5
# Failing rows shown per failing test: a few rows, a few columns, short values (the offending
# values and the keys that locate them, not whole records).
SAMPLE_ROWS = 5
SAMPLE_COLUMNS = 6
SAMPLE_WIDTH = 60
KEY_COLUMNS = (
    "transaction_id",
    "customer_id",
    "cutoff_date",
    "snapshot_cutoff",
    "training_cutoff",
    "dt",
)
# Where setup writes the manifest the nightly's dbt tasks are rendered from: inside the project's
# git-ignored target/, apart from the target/manifest.json of analysts' own dbt runs.
AIRFLOW_MANIFEST_DIR = Path("target/airflow")
MANIFEST_HASH_FILE = "code.sha256"
DBT_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True)
class FeatureSpec:
    """One online feature: its column name, DuckDB type and value for an unknown customer."""

    name: str
    type: str
    default: Any


@dataclass(frozen=True)
class OnlineSpec:
    """The online feature set declared in the snapshot model's YAML (`config: meta: online:`)."""

    entity_key: str
    ttl_days: int
    features: list[FeatureSpec]


@dataclass(frozen=True)
class NodeResult:
    """Outcome of one dbt node (model or test) in a build; `sample` holds the first failing rows
    of a failed test, one text line each."""

    name: str
    resource_type: str
    status: str
    failing_rows: int | None
    message: str
    sample: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{self.resource_type} {self.name}: {self.status}"
        if self.failing_rows:
            text += f", {self.failing_rows} failing rows"
        if self.message and (self.resource_type != "test" or self.status == "error"):
            text += f": {self.message}"
        for line in self.sample:
            text += f"\n      {line}"
        return text


class DbtBuildError(RuntimeError):
    """`dbt build` failed; `failures` lists the failing models and tests."""

    def __init__(self, message: str, failures: list[NodeResult]) -> None:
        super().__init__(message)
        self.failures = failures


def _project_dir(project_dir: Path | str | None) -> Path:
    return Path(project_dir) if project_dir else Settings.from_env().dbt_project_dir


def online_spec(project_dir: Path | str | None = None) -> OnlineSpec:
    """Read the online feature set from models/features/customer_snapshot.yml."""
    path = _project_dir(project_dir) / SNAPSHOT_YAML
    doc = yaml.safe_load(path.read_text())
    models = [m for m in doc.get("models", []) if m.get("name") == SNAPSHOT_MODEL]
    if len(models) != 1:
        raise ValueError(f"{path}: expected one model named {SNAPSHOT_MODEL}, found {len(models)}")
    online = (models[0].get("config") or {}).get("meta", {}).get("online")
    if not isinstance(online, dict):
        raise ValueError(
            f"{path}: model {SNAPSHOT_MODEL} has no `config: meta: online:` block; declare "
            "entity_key, ttl_days and features there"
        )
    ttl_days = online.get("ttl_days")
    features = online.get("features")
    if not online.get("entity_key") or not isinstance(ttl_days, int) or ttl_days < 1:
        raise ValueError(
            f"{path}: meta.online needs entity_key and an integer ttl_days >= 1, got "
            f"entity_key={online.get('entity_key')!r} ttl_days={ttl_days!r}"
        )
    if not isinstance(features, list) or not features:
        raise ValueError(f"{path}: meta.online.features must be a non-empty list")
    specs = []
    for position, feature in enumerate(features):
        if not isinstance(feature, dict) or not {"name", "type", "default"} <= feature.keys():
            raise ValueError(
                f"{path}: meta.online.features[{position}] needs name, type and default "
                f"(default may be null), got {feature!r}"
            )
        specs.append(FeatureSpec(str(feature["name"]), str(feature["type"]), feature["default"]))
    return OnlineSpec(str(online["entity_key"]), ttl_days, specs)


def _code_files(root: Path) -> Iterator[Path]:
    for name in CODE_FILES:
        if (root / name).is_file():
            yield root / name
    for folder in CODE_DIRS:
        yield from (p for p in (root / folder).rglob("*") if p.is_file())


def manifest_hash(project_dir: Path | str | None = None) -> str:
    """sha256 of the dbt code that builds the data (project file, models, macros, tests).

    Hashing the sources rather than target/manifest.json keeps the value stable across
    machines and runs: the manifest embeds timestamps, invocation ids and absolute paths.
    """
    root = _project_dir(project_dir)
    digest = hashlib.sha256()
    for path in sorted(_code_files(root), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


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

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


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


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SAMPLE_WIDTH else text[: SAMPLE_WIDTH - 3] + "..."


def failing_rows(
    settings: Settings, sql: str, column: str | None = None, dev: bool = False
) -> tuple[str, ...]:
    """The first rows a failed test's query returns, as `row i: col=value, ...` lines.

    The test's column comes first, then the keys that locate a row, then other columns up to
    SAMPLE_COLUMNS. Reads the warehouse read-only (with `dev`, the analysts' lake beside it); a
    sample that cannot be read says why instead of hiding the test's own failure.
    """
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.dev_db import connect_dev

    query = f"SELECT * FROM ({sql.strip().rstrip(';')}) AS failing LIMIT {SAMPLE_ROWS}"
    try:
        with connect_dev(settings) if dev else connect(settings, read_only=True) as con:
            cursor = con.execute(query)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
    except Exception as exc:  # noqa: BLE001 - the sample is a courtesy; the failure is reported
        return (f"(failing rows not shown: {type(exc).__name__}: {str(exc)[:200]})",)
    first = [c for c in (column, *KEY_COLUMNS) if c and c in names]
    shown = list(dict.fromkeys([*first, *names]))[:SAMPLE_COLUMNS]
    positions = [names.index(c) for c in shown]
    return tuple(
        f"row {i}: " + ", ".join(f"{names[p]}={_short(row[p])}" for p in positions)
        for i, row in enumerate(rows, start=1)
    )


def _node_results(result: Any, settings: Settings, target: Target) -> list[NodeResult]:
    nodes = []
    for item in getattr(result, "results", None) or []:
        node = item.node
        # Tests and unit tests have no relation; a failed unit test's message holds its diff.
        is_test = node.resource_type in ("test", "unit_test")
        name = node.name if is_test else f"{node.schema}.{node.alias}"
        status = getattr(item.status, "value", str(item.status))
        sample: tuple[str, ...] = ()
        if node.resource_type == "test" and status == "fail":
            column = getattr(node, "column_name", None)
            sample = failing_rows(settings, node.compiled_code, column, target.dev)
        nodes.append(
            NodeResult(
                name, str(node.resource_type), status, item.failures, item.message or "", sample
            )
        )
    return nodes


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
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        outcome, dbt_target, work_dir, elapsed = _invoke(command, settings, target, dbt_vars)
        nodes = _node_results(outcome.result, settings, dbt_target)
        failures = [n for n in nodes if n.status in FAILED_STATUSES]
        raced = [n for n in failures if lake.lost_a_race(n.message)]
        if not failures or len(raced) < len(failures) or attempt == BUILD_ATTEMPTS:
            break
        # Each model replaces its own rows (day D, or all of them): running the build again
        # is safe, and the other writer has committed by now.
        log.warning(
            "dbt build for %s: %s lost a commit race with another writer (%s); attempt %d/%d, "
            "running the build again",
            where,
            ", ".join(n.name for n in raced),
            raced[0].message.strip().splitlines()[-1],
            attempt,
            BUILD_ATTEMPTS,
        )
        time.sleep(attempt * random.uniform(0.5, 1.5))
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


def manifest_path(project_dir: Path | str | None = None) -> Path:
    """The manifest Cosmos renders the nightly's dbt tasks from (written by `ensure_manifest`)."""
    return _project_dir(project_dir) / AIRFLOW_MANIFEST_DIR / "manifest.json"


def manifest_is_current(project_dir: Path | str | None = None) -> bool:
    """Whether the manifest was parsed from the dbt code as it is now (see `manifest_hash`)."""
    path = manifest_path(project_dir)
    stamp = path.parent / MANIFEST_HASH_FILE
    return (
        path.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == manifest_hash(project_dir)
    )


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

    root = _project_dir(project_dir)
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
