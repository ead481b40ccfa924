"""Everything that differs between a laptop and production, read from the environment.

Embedded defaults put every local artefact under the project's `data/` folder so a fresh
clone runs with nothing configured; production sets the same variables to real services.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """A setting the deployment must provide is missing or invalid; the message names it."""


PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
CONF_DIR = PACKAGE_DIR / "conf"
WAREHOUSE_ACCESS_VAR = "MLPIPELINE_WAREHOUSE_ACCESS"


def candidates_path() -> Path:
    """The model candidates file: conf/candidates.yaml unless MLPIPELINE_CANDIDATES names another
    (a deployment may keep its own list of candidates and promotion rules)."""
    return Settings.from_env().candidates_file


def warehouse_access() -> str | None:
    """How the orchestrator declared the running task's use of the warehouse
    (MLPIPELINE_WAREHOUSE_ACCESS, set per task by the Airflow plugin; unset outside tasks)."""
    return os.environ.get(WAREHOUSE_ACCESS_VAR)


@cache
def pipeline_conf() -> dict[str, Any]:
    """Tunable thresholds and windows (conf/pipeline.yaml), shared by every stage."""
    return yaml.safe_load((CONF_DIR / "pipeline.yaml").read_text())


def _sqlite_catalog(data_dir: Path) -> str:
    """The embedded warehouse's catalog: one SQLite file, for a single machine."""
    return f"sqlite:{(data_dir / 'warehouse.sqlite').resolve()}"


def _local_data_path(data_dir: Path) -> str:
    """The embedded warehouse's Parquet files: `warehouse/` in the local object-store folder."""
    return f"{(data_dir / 'objectstore' / 'warehouse').resolve()}/"


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """Everything the project reads from the environment, typed and checked when read: a wrong
    value fails at start naming its variable, not later inside a task. Fields are named as in
    code; each reads the environment variable given as its alias."""

    model_config = SettingsConfigDict(
        frozen=True, env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(PROJECT_ROOT / "data", validation_alias="MLPIPELINE_DATA_DIR")
    # The warehouse, a DuckLake: its catalog database ("sqlite:<file>" or "postgres:<libpq
    # string>") and the folder or s3:// prefix its Parquet files live under.
    warehouse_catalog: str = Field("", validation_alias="WAREHOUSE_CATALOG", repr=False)
    warehouse_data_path: str = Field("", validation_alias="WAREHOUSE_DATA_PATH")
    # Production's catalog as analysts' dev lakes read it (a read-only role), and the dev lake.
    warehouse_reader_catalog: str = Field(
        "", validation_alias="WAREHOUSE_READER_CATALOG", repr=False
    )
    dev_warehouse_catalog: str = Field("", validation_alias="DEV_WAREHOUSE_CATALOG", repr=False)
    dev_warehouse_data_path: str = Field("", validation_alias="DEV_WAREHOUSE_DATA_PATH")
    # A DuckDB-file warehouse of an earlier release: only `warehouse migrate` reads it.
    duckdb_path: Path = Field(Path(), validation_alias="DUCKDB_PATH")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL", repr=False)
    mlflow_tracking_uri: str = Field("", validation_alias="MLFLOW_TRACKING_URI")
    # Where a browser reaches the MLflow UI (empty: no links); in docker-compose the tracking
    # URI names the service (http://mlflow:5000) while the browser needs http://localhost:5000.
    mlflow_ui_url: str = Field("", validation_alias="MLFLOW_UI_URL")
    bucket: str | None = Field(None, validation_alias="MLPIPELINE_BUCKET")
    # The S3 API (MinIO on the stack): boto3 reads the same variables; DuckDB gets them here.
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    aws_region: str = Field("us-east-1", validation_alias="AWS_DEFAULT_REGION")
    aws_access_key_id: str = Field("", validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr = Field(
        SecretStr(""), validation_alias="AWS_SECRET_ACCESS_KEY"
    )
    # The dbt project (DBT_PROJECT_DIR): a checkout's own by default; an installed package
    # has none beside it, so a deployment names it.
    dbt_project_dir: Path = Field(PROJECT_ROOT / "dbt_project", validation_alias="DBT_PROJECT_DIR")
    candidates_file: Path = Field(
        CONF_DIR / "candidates.yaml", validation_alias="MLPIPELINE_CANDIDATES"
    )
    # The GX suites (a deployment may keep its own) and the code version models are tagged with
    # (the image has no .git; a checkout's HEAD when unset).
    expectations_dir: Path = Field(
        CONF_DIR / "expectations", validation_alias="MLPIPELINE_EXPECTATIONS_DIR"
    )
    git_commit: str | None = Field(None, validation_alias="GIT_COMMIT")

    @model_validator(mode="before")
    @classmethod
    def _local_defaults(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Unset locations default to files under the data folder: a fresh clone runs with
        nothing configured."""
        values = {cls._field_of(key): value for key, value in values.items()}
        data_dir = Path(values.get("data_dir") or PROJECT_ROOT / "data").expanduser().resolve()
        tracking = (
            values.get("mlflow_tracking_uri") or f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
        )
        served = tracking if tracking.startswith(("http://", "https://")) else ""
        return {
            **values,
            "data_dir": data_dir,
            "warehouse_catalog": values.get("warehouse_catalog") or _sqlite_catalog(data_dir),
            "warehouse_data_path": values.get("warehouse_data_path") or _local_data_path(data_dir),
            "duckdb_path": values.get("duckdb_path") or data_dir / "warehouse.duckdb",
            "mlflow_tracking_uri": tracking,
            "mlflow_ui_url": values.get("mlflow_ui_url") or served,
        }

    @classmethod
    def _field_of(cls, key: str) -> str:
        by_alias = {f.validation_alias: name for name, f in cls.model_fields.items()}
        return by_alias.get(key, key)

    @field_validator(
        "data_dir", "duckdb_path", "dbt_project_dir", "candidates_file", "expectations_dir"
    )
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(REDIS_SCHEMES):
            raise ValueError(f"REDIS_URL must start with one of {REDIS_SCHEMES}, got {url!r}")
        return url

    @property
    def local_store_root(self) -> Path:
        """Root of the folder object store used when no bucket is configured."""
        return self.data_dir / "objectstore"

    @classmethod
    def under(cls, data_dir: Path) -> Settings:
        """Every artefact local under one folder, nothing read from the environment: what tests
        and benchmarks use for a private, throwaway pipeline."""
        local = {
            "data_dir": data_dir,
            "mlflow_tracking_uri": f"sqlite:///{(data_dir / 'mlflow.db').resolve()}",
        }
        return cls.model_construct(**cls._local_defaults(local))

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of this process's environment, read now (a task sees its own)."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from exc
