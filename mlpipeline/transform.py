"""Build the dbt feature project (dbt_project/) for a processing day, in-process.

dbt runs through `dbtRunner` so its events reach this module's logger (and so the Airflow task
log) instead of a separate console. A failed build raises `DbtBuildError` naming every failing
model and test with its failing row count, so on-call sees what broke without opening dbt.log.
The online feature set is declared once, in the snapshot model's YAML; `online_spec()` reads it
from there for the exporter, the trainer and the online reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from mlpipeline.config import Settings
from mlpipeline.days import parse_day

log = logging.getLogger(__name__)
dbt_log = logging.getLogger(f"{__name__}.dbt")

SNAPSHOT_MODEL = "customer_snapshot"
SNAPSHOT_YAML = Path("models/features/customer_snapshot.yml")
# What defines the data dbt builds; profiles.yml (where it connects) and target/ are left out.
CODE_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")
CODE_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
FAILED_STATUSES = {"error", "fail", "runtime error"}
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
    """Outcome of one dbt node (model or test) in a build."""

    name: str
    resource_type: str
    status: str
    failing_rows: int | None
    message: str

    def describe(self) -> str:
        text = f"{self.resource_type} {self.name}: {self.status}"
        if self.failing_rows:
            text += f", {self.failing_rows} failing rows"
        if self.message and (self.resource_type != "test" or self.status == "error"):
            text += f": {self.message}"
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


def _warehouse(settings: Settings, target: str) -> tuple[str, Path]:
    """The profile's path variable for a target and the DuckDB file it should point at.

    prod is the pipeline's warehouse; dev is the analysts' copy, `$DBT_DEV_DUCKDB_PATH` or
    `<data_dir>/dev.duckdb`. Passing an absolute path keeps dbt independent of the cwd (the
    profile's relative defaults resolve against it).
    """
    if target == "prod":
        return "DUCKDB_PATH", settings.duckdb_path
    if target == "dev":
        override = os.environ.get("DBT_DEV_DUCKDB_PATH")
        path = Path(override).expanduser().resolve() if override else None
        return "DBT_DEV_DUCKDB_PATH", path or settings.data_dir / "dev.duckdb"
    raise ValueError(f"unknown dbt target {target!r}; dbt_project/profiles.yml has dev and prod")


@contextmanager
def _dbt_environment(variable: str, path: Path) -> Iterator[None]:
    """Point the profile at the warehouse; afterwards release it and restore the env."""
    saved = os.environ.get(variable)
    os.environ[variable] = str(path)
    try:
        yield
    finally:
        _release_warehouse()
        if saved is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved


def _node_results(result: Any) -> list[NodeResult]:
    nodes = []
    for item in getattr(result, "results", None) or []:
        node = item.node
        name = node.name if node.resource_type == "test" else f"{node.schema}.{node.alias}"
        status = getattr(item.status, "value", str(item.status))
        nodes.append(
            NodeResult(name, str(node.resource_type), status, item.failures, item.message or "")
        )
    return nodes


def build(
    day: str | date,
    *,
    settings: Settings | None = None,
    full_refresh: bool = False,
    target: str = "prod",
    select: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run `dbt build` for processing day D; raise `DbtBuildError` if any model or test failed.

    Incremental models recompute only cutoff D; `full_refresh` rebuilds every cutoff from the
    first raw day to D (needed after a feature is added or retyped). `select` narrows the build
    with dbt's selection syntax. prod writes `settings.duckdb_path`, dev the analysts' copy
    (see `_warehouse`); dbt's target/ and logs/ go under `<data_dir>/dbt/<target>/`. Returns a
    JSON-ready summary (for XCom): day, target, node count, warnings, elapsed seconds and the
    hash of the dbt code that built the data.
    """
    from dbt.cli.main import dbtRunner

    settings = settings or Settings.from_env()
    processing_day = parse_day(day)
    path_variable, warehouse = _warehouse(settings, target)
    project_dir = settings.dbt_project_dir
    work_dir = settings.data_dir / "dbt" / target
    args = [
        "build",
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target", target,
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
        "--log-level", "none",
        "--log-level-file", "debug",
        "--no-use-colors",
        "--vars", json.dumps({"processing_day": processing_day.isoformat()}),
    ]  # fmt: skip
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *([select] if isinstance(select, str) else select)]
    where = f"processing day {processing_day} (target {target}, warehouse {warehouse})"
    log.info("dbt build for %s%s", where, ", full refresh" if full_refresh else "")
    started = time.monotonic()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with _dbt_environment(path_variable, warehouse):
        outcome = dbtRunner(callbacks=[_forward_event]).invoke(args)
    elapsed = time.monotonic() - started
    nodes = _node_results(outcome.result)
    failures = [n for n in nodes if n.status in FAILED_STATUSES]
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
