"""`make demo`: land a history of demo data, load it, run `fraud_nightly` for the last day with
`airflow dags test`, and print what the run left behind.

Everything runs on the embedded defaults (DuckDB file, folder object store, MLflow in SQLite,
a private Redis) unless the environment points elsewhere.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta

from mlpipeline import local_airflow
from mlpipeline.catchup import catchup
from mlpipeline.config import Settings, pipeline_conf
from mlpipeline.generate import generate_range
from mlpipeline.localredis import resolve_url
from mlpipeline.objectstore import from_settings
from mlpipeline.summary import summarize

log = logging.getLogger(__name__)


def run_demo(end: date, *, history_days: int, customers: int) -> int:
    """Returns the nightly run's exit code (0: every task succeeded)."""
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
    env = local_airflow.airflow_env(settings, {"REDIS_URL": resolve_url(settings)})
    local_airflow.init(env)
    code = local_airflow.dags_test("fraud_nightly", end, env)
    summary = summarize(end, settings)
    summary["nightly_exit_code"] = code
    summary["demo_seconds"] = round(time.monotonic() - began)
    print("\n=== fraud_nightly demo summary ===")
    print(json.dumps(summary, indent=2, default=str))
    return code
