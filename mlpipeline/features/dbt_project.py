"""The dbt project as code: the online feature set it declares, and the hash and manifest of
its sources.

The online feature set is declared once, in the snapshot model's YAML; `online_spec()` reads it
from there for the exporter, the trainer and the online reader. The project is found by the
`DBT_PROJECT_DIR` setting, not by this package's location, so the package installs as a wheel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlpipeline.core.config import ConfigurationError, Settings

SNAPSHOT_MODEL = "customer_snapshot"
SNAPSHOT_YAML = Path("models/features/customer_snapshot.yml")


# What defines the data dbt builds; profiles.yml (where it connects) and target/ are left out.
CODE_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")
CODE_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")


# Where setup writes the manifest the nightly's dbt tasks are rendered from: inside the project's
# git-ignored target/, apart from the target/manifest.json of analysts' own dbt runs.
AIRFLOW_MANIFEST_DIR = Path("target/airflow")
MANIFEST_HASH_FILE = "code.sha256"


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


def project_root(project_dir: Path | str | None) -> Path:
    """`project_dir`, else the configured one (`DBT_PROJECT_DIR`), which must hold a project."""
    if project_dir:
        return Path(project_dir)
    root = Settings.from_env().dbt_project_dir
    if not (root / "dbt_project.yml").is_file():
        raise ConfigurationError(
            f"no dbt project at {root} (no dbt_project.yml): set DBT_PROJECT_DIR to the "
            "repository's dbt_project/ folder (a checkout finds its own by default)"
        )
    return root


def online_spec(project_dir: Path | str | None = None) -> OnlineSpec:
    """Read the online feature set from models/features/customer_snapshot.yml."""
    path = project_root(project_dir) / SNAPSHOT_YAML
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
    root = project_root(project_dir)
    digest = hashlib.sha256()
    for path in sorted(_code_files(root), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def manifest_path(project_dir: Path | str | None = None) -> Path:
    """The manifest Cosmos renders the nightly's dbt tasks from (written by `ensure_manifest`)."""
    return project_root(project_dir) / AIRFLOW_MANIFEST_DIR / "manifest.json"


def manifest_is_current(project_dir: Path | str | None = None) -> bool:
    """Whether the manifest was parsed from the dbt code as it is now (see `manifest_hash`)."""
    path = manifest_path(project_dir)
    stamp = path.parent / MANIFEST_HASH_FILE
    return (
        path.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == manifest_hash(project_dir)
    )
