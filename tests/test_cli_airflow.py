"""`mlpipeline airflow ...` works from a shell that did not activate the venv, and only the
commands that run tasks start the local Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

MLPIPELINE = Path(sys.executable).parent / "mlpipeline"


def test_airflow_commands_run_without_the_venv_on_path_and_start_no_redis(tmp_path: Path):
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "MLPIPELINE_DATA_DIR": str(tmp_path / "data"),
        "LANG": "C.UTF-8",
    }
    for args in (["--help"], ["version"], ["dags", "list"]):
        done = subprocess.run(
            [str(MLPIPELINE), "airflow", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (tmp_path / "data" / "redis").exists(), "a Redis server was started"
    # The first command set up the local Airflow: its admin password stays private.
    passwords = tmp_path / "data" / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert passwords.stat().st_mode & 0o777 == 0o600


def test_airflow_finds_its_own_command_first_on_path(tmp_path: Path, monkeypatch):
    """`airflow standalone` starts its components as `airflow ...` from PATH."""
    from mlpipeline.core.config import Settings
    from mlpipeline.devtools import local_airflow

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = local_airflow.airflow_env(Settings.under(tmp_path))
    assert env["PATH"].split(os.pathsep)[0] == str(MLPIPELINE.parent)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"  # the laptop's UI answers this machine only
