"""Settings: every variable read in one typed place, checked when read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipeline.core.config import AirflowApiSettings, ConfigurationError, Settings

pytestmark = pytest.mark.unit


def test_a_fresh_clone_needs_nothing_set_and_everything_lands_under_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH", "MLFLOW_TRACKING_URI", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(tmp_path / "d"))
    settings = Settings.from_env()
    assert settings.warehouse_catalog == f"sqlite:{tmp_path / 'd' / 'warehouse.sqlite'}"
    assert settings.warehouse_data_path == f"{tmp_path / 'd' / 'objectstore' / 'warehouse'}/"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'd' / 'mlflow' / 'mlflow.db'}"
    assert settings.redis_url is None and settings.mlflow_ui_url == ""


def test_the_environment_overrides_and_an_empty_variable_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("REDIS_URL", "rediss://:secret@redis:6380/2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("WAREHOUSE_CATALOG", "")
    settings = Settings.from_env()
    assert settings.mlflow_ui_url == "http://mlflow:5000"  # a served tracking URI is the UI's
    assert settings.redis_url == "rediss://:secret@redis:6380/2"
    assert settings.warehouse_catalog == f"sqlite:{tmp_path / 'warehouse.sqlite'}"
    assert "s3cret" not in repr(settings)  # secrets stay out of logs

    # Tests' private settings never read the environment.
    assert Settings.under(tmp_path / "t").mlflow_tracking_uri.endswith("/t/mlflow.db")
    assert Settings.under(tmp_path / "t").redis_url is None


def test_a_wrong_value_fails_at_start_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://redis:6379")
    with pytest.raises(ConfigurationError, match="REDIS_URL must start with one of"):
        Settings.from_env()


def test_what_shapes_the_dag_comes_from_the_environment_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sensor timing and training slots are read at DAG parse: settings, not a file."""
    for var in ("MLPIPELINE_LANDING_POKE_SECONDS", "MLPIPELINE_TRAINING_PARALLEL_TASKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLPIPELINE_LANDING_TIMEOUT_MINUTES", "90")
    settings = Settings.from_env()
    assert (settings.landing_poke_seconds, settings.landing_timeout_minutes) == (300, 90)
    assert settings.training_parallel_tasks == 2
    assert Settings.under(tmp_path).landing_timeout_minutes == 360
    monkeypatch.setenv("MLPIPELINE_LANDING_POKE_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="MLPIPELINE_LANDING_POKE_SECONDS"):
        Settings.from_env()


def test_airflow_api_credentials_are_typed_and_stay_out_of_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW_API_TOKEN", raising=False)
    monkeypatch.setenv("AIRFLOW_API_URL", "http://airflow-apiserver:8080")
    monkeypatch.setenv("AIRFLOW_API_USERNAME", "admin")
    monkeypatch.setenv("AIRFLOW_API_PASSWORD", "pa55word")
    api = AirflowApiSettings.from_env()
    assert api.url == "http://airflow-apiserver:8080" and api.token is None
    assert api.password is not None and api.password.get_secret_value() == "pa55word"
    assert "pa55word" not in repr(api)
    monkeypatch.setenv("AIRFLOW_API_URL", "")
    assert AirflowApiSettings.from_env().url is None  # empty: no API, commands are printed
