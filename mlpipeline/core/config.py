"""Everything that differs between a laptop and production, read from the environment.

Embedded defaults put every local artefact under the project's `data/` folder so a fresh
clone runs with nothing configured; production sets the same variables to real services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml


class ConfigurationError(RuntimeError):
    """A setting the deployment must provide is missing or invalid; the message names it."""


PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
CONF_DIR = PACKAGE_DIR / "conf"


def candidates_path() -> Path:
    """The model candidates file: conf/candidates.yaml unless MLPIPELINE_CANDIDATES names another
    (a deployment may keep its own list of candidates and promotion rules)."""
    return Path(os.environ.get("MLPIPELINE_CANDIDATES") or CONF_DIR / "candidates.yaml")


@cache
def pipeline_conf() -> dict[str, Any]:
    """Tunable thresholds and windows (conf/pipeline.yaml), shared by every stage."""
    return yaml.safe_load((CONF_DIR / "pipeline.yaml").read_text())


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def _sqlite_catalog(data_dir: Path) -> str:
    """The embedded warehouse's catalog: one SQLite file, for a single machine."""
    return f"sqlite:{(data_dir / 'warehouse.sqlite').resolve()}"


def _local_data_path(data_dir: Path) -> str:
    """The embedded warehouse's Parquet files: `warehouse/` in the local object-store folder."""
    return f"{(data_dir / 'objectstore' / 'warehouse').resolve()}/"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # The warehouse, a DuckLake: its catalog database ("sqlite:<file>" or "postgres:<libpq
    # string>") and the folder or s3:// prefix its Parquet files live under.
    warehouse_catalog: str
    warehouse_data_path: str
    # A DuckDB-file warehouse of an earlier release: only `warehouse migrate` reads it.
    duckdb_path: Path
    redis_url: str | None
    mlflow_tracking_uri: str
    bucket: str | None
    aws_endpoint_url: str | None
    # The dbt project (DBT_PROJECT_DIR): a checkout's own by default; an installed package
    # has none beside it, so a deployment names it.
    dbt_project_dir: Path = field(default=PROJECT_ROOT / "dbt_project")
    # Where a browser reaches the MLflow UI (empty: no links); in docker-compose the tracking
    # URI names the service (http://mlflow:5000) while the browser needs http://localhost:5000.
    mlflow_ui_url: str = ""

    @property
    def local_store_root(self) -> Path:
        """Root of the folder object store used when no bucket is configured."""
        return self.data_dir / "objectstore"

    @classmethod
    def under(cls, data_dir: Path) -> Settings:
        """Every artefact local under one folder, nothing read from the environment: what tests
        and benchmarks use for a private, throwaway pipeline."""
        return cls(
            data_dir=data_dir,
            warehouse_catalog=_sqlite_catalog(data_dir),
            warehouse_data_path=_local_data_path(data_dir),
            duckdb_path=data_dir / "warehouse.duckdb",
            redis_url=None,
            mlflow_tracking_uri=f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
            bucket=None,
            aws_endpoint_url=None,
        )

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = _path("MLPIPELINE_DATA_DIR", PROJECT_ROOT / "data")
        mlflow_default = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_default
        served = tracking_uri if tracking_uri.startswith(("http://", "https://")) else ""
        return cls(
            data_dir=data_dir,
            warehouse_catalog=os.environ.get("WAREHOUSE_CATALOG") or _sqlite_catalog(data_dir),
            warehouse_data_path=(
                os.environ.get("WAREHOUSE_DATA_PATH") or _local_data_path(data_dir)
            ),
            duckdb_path=_path("DUCKDB_PATH", data_dir / "warehouse.duckdb"),
            redis_url=os.environ.get("REDIS_URL") or None,
            mlflow_tracking_uri=tracking_uri,
            bucket=os.environ.get("MLPIPELINE_BUCKET") or None,
            aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            mlflow_ui_url=os.environ.get("MLFLOW_UI_URL") or served,
            dbt_project_dir=_path("DBT_PROJECT_DIR", PROJECT_ROOT / "dbt_project"),
        )
