"""`make demo`: land a history of demo data, load it, run `fraud_nightly` for the last day through
Airflow's scheduler, and print what the run left behind.

The night is a normal run: for last night (the default), the nightly's own scheduled run,
created by the scheduler (LocalExecutor) when `fraud_nightly` is unpaused; for another `--end`,
a manual run. Either has a real start time and duration, and every task writes the log the UI
shows (`make ui` afterwards). `fraud_nightly` is unpaused for the run only; local DAGs stay
paused until the user decides, and unpausing it later does not run that night again.

Everything runs on the embedded defaults (a DuckLake in a SQLite catalog and the folder object
store, MLflow in SQLite,
a private Redis) unless the environment points elsewhere.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools import local_airflow, monitoring_history
from mlpipeline.devtools.generate import generate_range
from mlpipeline.devtools.localredis import free_port, resolve_url
from mlpipeline.devtools.summary import summarize
from mlpipeline.pipeline.catchup import catchup

log = logging.getLogger(__name__)

NIGHTLY = "fraud_nightly"


def run_demo(end: date, *, history_days: int, customers: int) -> int:
    """Returns 0 when the nightly run succeeded, 1 otherwise."""
    began = time.monotonic()
    settings = Settings.from_env()
    conf = pipeline_conf()["generator"]
    start = end - timedelta(days=history_days)
    log.info("demo: history %s .. %s, nightly run for %s, %d customers", start, end, end, customers)
    generate_range(
        from_settings(settings),
        start,
        end,
        customers=customers,
        seed=conf["seed"],
        fraud_rate=conf["fraud_rate"],
    )
    catchup(start, end - timedelta(days=1), run_id="demo-catchup")
    scheduled = end == datetime.now(UTC).date() - timedelta(days=1)
    env = local_airflow.airflow_env(
        settings,
        {
            "REDIS_URL": resolve_url(settings),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            # The nightly's own scheduled run when D is last night; for another D, only the
            # demo's manual run (unpausing must not add a scheduled one for last night).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled),
        },
    )
    local_airflow.init(env)
    log_dir = settings.data_dir / "logs" / "demo"
    services = local_airflow.start_services(local_airflow.services_env(env, free_port()), log_dir)
    try:
        run_id, state = local_airflow.run_once(services, NIGHTLY, end, scheduled=scheduled)
    finally:
        services.stop()
    code = 0 if state == "success" else 1
    history = monitoring_history.build(settings, end, pipeline_conf()["demo"]["monitored_days"])
    summary = summarize(end, settings)
    summary["monitoring"] = {
        **history,
        "report": f"mlpipeline monitor report {end} (or the monitor task's link in `make ui`)",
    }
    summary["nightly_run"] = {
        "run_id": run_id,
        "state": state,
        "task_logs": str(
            Path(env["AIRFLOW_HOME"]) / "logs" / f"dag_id={NIGHTLY}" / f"run_id={run_id}"
        ),
        "open_the_ui": "make ui",
    }
    if not settings.redis_url:
        summary["local_redis"] = {
            "url": resolve_url(settings),
            "note": "keeps running for `mlpipeline online get` and the scoring API; stop it "
            "with: kill $(cat data/redis/redis-*.pid)",
        }
    summary["demo_seconds"] = round(time.monotonic() - began)
    print("\n=== fraud_nightly demo summary ===")
    print(json.dumps(summary, indent=2, default=str))
    return code
