"""Everything that differs between a laptop and production, read from the environment.

Embedded defaults put every local artefact under the project's `data/` folder so a fresh
clone runs with nothing configured; production sets the same variables to real services.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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


class _FromEnv(BaseSettings):
    """Settings read from the environment, typed and checked when read: a wrong value fails at
    start naming its variable, not later inside a task. Fields are named as in code; each reads
    the environment variable given as its alias (or takes it by name when built in code)."""

    model_config = SettingsConfigDict(
        frozen=True, env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    @classmethod
    def from_env(cls) -> Self:
        """The settings of this process's environment, read now (a task sees its own). A wrong
        value is reported by its variable, without the value (it may be a secret)."""
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(
                f"{cls._variable(str(error['loc'][0]) if error['loc'] else '')}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from exc

    @classmethod
    def _variable(cls, field_name: str) -> str:
        field = cls.model_fields.get(field_name)
        return str(field.validation_alias) if field and field.validation_alias else field_name


class Settings(_FromEnv):
    """Everything the pipeline's stages read from the environment. The alert destinations
    (`AlertSettings`) and Airflow's REST API (`AirflowApiSettings`) are apart: only the alert
    callback and `batches release` read them."""

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
    # What Airflow schedules by, read where the DAG is parsed: the landing sensors' poke interval
    # and timeout, and how many candidates train at once (the mapped `train` tasks' limit; each
    # limits its threads to cores // this, see mlpipeline.training.candidates). Environment
    # variables, not files, because the scheduler acts on them from the parsed DAG: a parse then
    # opens nothing but the dbt manifest Cosmos renders from, and every Airflow component of a
    # deployment shares one environment.
    landing_poke_seconds: int = Field(300, ge=1, validation_alias="MLPIPELINE_LANDING_POKE_SECONDS")
    landing_timeout_minutes: int = Field(
        360, ge=1, validation_alias="MLPIPELINE_LANDING_TIMEOUT_MINUTES"
    )
    training_parallel_tasks: int = Field(
        2, ge=1, validation_alias="MLPIPELINE_TRAINING_PARALLEL_TASKS"
    )
    # `mlpipeline serve`'s request log (mlpipeline.scoring.request_log): on or off, how many
    # requests it buffers (beyond that they are dropped and counted, never waited for), and
    # when it writes to the object store: a batch of this many, or this long after the last.
    request_log_enabled: bool = Field(True, validation_alias="MLPIPELINE_REQUEST_LOG_ENABLED")
    request_log_queue_size: int = Field(
        10_000, ge=1, validation_alias="MLPIPELINE_REQUEST_LOG_QUEUE_SIZE"
    )
    request_log_batch_size: int = Field(
        1_000, ge=1, validation_alias="MLPIPELINE_REQUEST_LOG_BATCH_SIZE"
    )
    request_log_flush_seconds: float = Field(
        60.0, gt=0, validation_alias="MLPIPELINE_REQUEST_LOG_FLUSH_SECONDS"
    )

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


def _unset_when_blank(value: Any) -> Any:  # noqa: ANN401 - whatever the field is given
    return (value.strip() or None) if isinstance(value, str) else value


class AlertSettings(_FromEnv):
    """Where failure and quarantine alerts go. Email goes through an Airflow SMTP connection
    (`smtp_conn_id`, else Airflow's `[email] email_conn_id`); Slack and the webhook through an
    Airflow connection id or, simpler, a URL (a connection id wins when both are set). The URLs
    carry their credentials (a Slack webhook's token), so they are secrets."""

    # Comma-separated recipients; none: no email.
    email_to: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="MLPIPELINE_ALERT_EMAIL_TO"
    )
    email_from: str | None = Field(None, validation_alias="MLPIPELINE_ALERT_EMAIL_FROM")
    smtp_conn_id: str | None = Field(None, validation_alias="MLPIPELINE_ALERT_SMTP_CONN_ID")
    slack_conn_id: str | None = Field(None, validation_alias="MLPIPELINE_ALERT_SLACK_CONN_ID")
    slack_webhook_url: SecretStr | None = Field(
        None, validation_alias="MLPIPELINE_ALERT_SLACK_WEBHOOK_URL"
    )
    webhook_conn_id: str | None = Field(None, validation_alias="MLPIPELINE_ALERT_WEBHOOK_CONN_ID")
    webhook_url: SecretStr | None = Field(None, validation_alias="MLPIPELINE_ALERT_WEBHOOK_URL")

    @field_validator("email_to", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> Any:  # noqa: ANN401 - a string or a sequence
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator(
        "email_from",
        "smtp_conn_id",
        "slack_conn_id",
        "slack_webhook_url",
        "webhook_conn_id",
        "webhook_url",
        mode="before",
    )
    @classmethod
    def _blank(cls, value: Any) -> Any:  # noqa: ANN401 - a string or None
        return _unset_when_blank(value)

    @property
    def destinations(self) -> list[str]:
        """The configured destinations, in sending order."""
        wanted = {
            "email": bool(self.email_to),
            "slack": bool(self.slack_conn_id or self.slack_webhook_url),
            "webhook": bool(self.webhook_conn_id or self.webhook_url),
        }
        return [name for name, on in wanted.items() if on]


class AirflowApiSettings(_FromEnv):
    """Airflow's REST API: `fraud_backfill` creates and follows its backfill through it, a failed
    backfill run's watcher cancels the backfill, and `mlpipeline batches release` starts the
    re-runs (no URL: it prints the commands instead). A token, or a user and password to fetch
    one."""

    url: str | None = Field(None, validation_alias="AIRFLOW_API_URL")
    token: SecretStr | None = Field(None, validation_alias="AIRFLOW_API_TOKEN")
    username: str | None = Field(None, validation_alias="AIRFLOW_API_USERNAME")
    password: SecretStr | None = Field(None, validation_alias="AIRFLOW_API_PASSWORD")

    @field_validator("url", "token", "username", "password", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:  # noqa: ANN401 - a string or None
        return _unset_when_blank(value)
