"""`mlpipeline ui` as a new user runs it: from a shell where nothing is activated, one command
brings up the Airflow UI (with its scheduler) and the MLflow UI, says how to log in and what is
paused, and stops everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlpipeline.config import PROJECT_ROOT
from mlpipeline.localredis import free_port
from tests.e2e_env import private_redis

pytestmark = pytest.mark.e2e

READY = "Ctrl-C stops everything started here."


def _lines(process: subprocess.Popen, into: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line.rstrip("\n"))


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
        return True
    except (urllib.error.URLError, OSError):
        return False


def test_one_command_opens_both_uis_from_a_shell_without_the_venv(
    tmp_path: Path, redis_server: str
) -> None:
    airflow_port, mlflow_port = free_port(), free_port()
    env = {
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "MLPIPELINE_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": private_redis(redis_server, 12),
    }
    process = subprocess.Popen(
        [str(PROJECT_ROOT / ".venv" / "bin" / "mlpipeline"), "ui"]
        + ["--airflow-port", str(airflow_port), "--mlflow-port", str(mlflow_port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    threading.Thread(target=_lines, args=(process, output), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while READY not in output:
            assert process.poll() is None, "\n".join(output[-40:])
            assert time.monotonic() < deadline, "\n".join(output[-40:])
            time.sleep(1)
        text = "\n".join(output)
        airflow, mlflow = f"http://127.0.0.1:{airflow_port}", f"http://127.0.0.1:{mlflow_port}"
        (password,) = re.findall(rf"Airflow UI:  {airflow}    user admin, password (\S+)", text)
        assert f"MLflow UI:   {mlflow}" in text
        assert re.search(r"PAUSED\s+fraud_nightly: unpausing it runs every night", text)
        assert re.search(r"PAUSED\s+fraud_backfill: unpausing it lets a triggered backfill", text)

        token = urllib.request.urlopen(
            urllib.request.Request(
                f"{airflow}/auth/token",
                data=json.dumps({"username": "admin", "password": password}).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=10,
        )
        assert json.load(token)["access_token"]
        assert _answers(f"{mlflow}/health")
        (kept,) = re.findall(r"\(kept in (\S+); the same on every start\)", text)
        assert Path(kept).parent == tmp_path / "data" / "airflow"
        assert json.loads(Path(kept).read_text()) == {"admin": password}
        assert Path(kept).stat().st_mode & 0o077 == 0
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(90)
    assert code == 0, "\n".join(output[-40:])
    assert not _answers(f"{airflow}/api/v2/monitor/health") and not _answers(f"{mlflow}/health")
