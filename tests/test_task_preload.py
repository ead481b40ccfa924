"""Task processes start with the tasks' libraries already in memory, on the laptop's
LocalExecutor and on the stack's Celery workers alike (mlpipeline_airflow.task_preload).

Both mechanisms fail silently: a fork server skips a preload module that does not import, and a
wrong setting name is just ignored, so each would lose the speed-up without an error. These
tests start the processes the way Airflow does, from the configuration the project ships.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.devtools import local_airflow
from tests.compose_file import env_of, load_compose

pytestmark = pytest.mark.integration

# What a task would otherwise import itself, at several seconds each.
HEAVY = ["great_expectations", "dbt.cli.main", "mlflow", "sklearn.ensemble", "skops.io"]


def _python(script: str, env: dict[str, str], cwd: Path) -> dict:
    path = cwd / "probe.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_local_executor_workers_are_forked_with_the_task_libraries_loaded(tmp_path: Path):
    """The scheduler's LocalExecutor forks its workers (and they their tasks) from a fork server
    that preloaded the libraries: a worker has them before it runs anything."""
    env = local_airflow.airflow_env(Settings.under(tmp_path / "data"))
    probe = _python(
        f"""
        import json, multiprocessing, sys
        from airflow.utils.process_utils import set_component_mp_start_method

        def report(queue):
            queue.put([name for name in {HEAVY!r} if name in sys.modules])

        if __name__ == "__main__":
            set_component_mp_start_method("scheduler")
            queue = multiprocessing.Queue()
            worker = multiprocessing.Process(target=report, args=(queue,))
            worker.start()
            loaded = queue.get(timeout=240)
            worker.join()
            print(json.dumps({{"method": multiprocessing.get_start_method(), "loaded": loaded}}))
        """,
        env,
        tmp_path,
    )
    assert probe == {"method": "forkserver", "loaded": HEAVY}


def test_stack_celery_workers_import_the_task_libraries_before_forking_their_pool(
    tmp_path: Path,
):
    """The compose file's Celery settings keep Airflow's and add the preload to `imports`,
    which a Celery worker imports at start-up, before its prefork pool."""
    compose = load_compose((PROJECT_ROOT / "docker-compose.yml").read_text())
    worker_env = env_of(compose["services"]["airflow-worker"])
    env = local_airflow.airflow_env(
        Settings.under(tmp_path / "data"),
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:1/0",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": worker_env[
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"
            ],
        },
    )
    probe = _python(
        f"""
        import json, sys
        from airflow.providers.celery.executors.celery_executor_utils import app

        before = [name for name in {HEAVY!r} if name in sys.modules]
        app.loader.import_default_modules()
        print(json.dumps({{
            "broker": app.conf.broker_url,
            "acks_late": app.conf.task_acks_late,
            "before": before,
            "after": [name for name in {HEAVY!r} if name in sys.modules],
        }}))
        """,
        env,
        tmp_path,
    )
    assert probe == {
        "broker": "redis://127.0.0.1:1/0",
        "acks_late": True,
        "before": [],
        "after": HEAVY,
    }
