"""The training stage's wall time: candidates in parallel against the same candidates one after
another, in the same run, on a 200k-row training set.

Each training task runs as its own process calling `mlpipeline.pipeline.nightly.train(job)`,
exactly what an Airflow mapped `train` task runs: it reads the persisted split from the object
store, fits one candidate with its share of the cores, and logs and registers it in MLflow.

- parallel: `MLPIPELINE_TRAINING_PARALLEL_TASKS=2` (the default): both tasks start at once,
  each limited to cores // 2 threads;
- one after another: `MLPIPELINE_TRAINING_PARALLEL_TASKS=1`, each task alone with every core
  (what the DAG does with one training slot): the honest baseline, not a one-core straw man.

Each phase gets its own MLflow store (a second phase on the same store would reuse the first
phase's runs). The CPU time of every task (from `wait4`) shows what each way costs the machine.

The training set has the columns of `marts.training_set` with every online feature the dbt
YAML declares, drawn from a customer population with planted fraud patterns (about 1.2 %
fraud); building 200k matured rows through the generator and dbt would take the benchmark
several minutes before it measured anything.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.harness import Result
from mlpipeline.core.config import CONF_DIR, PROJECT_ROOT
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.features import dbt_project
from mlpipeline.training import model_registry
from mlpipeline.training.split import split_dataset
from mlpipeline.training.split_store import persist_split

log = logging.getLogger(__name__)

ROWS = 200_000
# Whatever would point the benchmark's processes at another warehouse than its own.
WAREHOUSE_VARS = ("WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH")
CUSTOMERS = 8_000
DAYS = 90
CUTOFF = date(2026, 4, 30)
TASK = "import json, sys; from mlpipeline import nightly; nightly.train(json.loads(sys.argv[1]))"


def training_set(rows: int = ROWS, customers: int = CUSTOMERS, seed: int = 11) -> pd.DataFrame:
    """Rows shaped like marts.training_set: transaction fields, the declared online features the
    transaction saw, is_fraud."""
    rng = np.random.default_rng(seed)
    countries = np.array(["DE", "FR", "NL", "ES", "IT", "BE", "AT", "PL"])
    abroad = np.array(["US", "GB", "BR", "NG", "TH", "TR", "AE"])
    categories = np.array(
        ["grocery", "restaurants", "fuel", "travel", "electronics", "fashion", "digital_goods"]
        + ["pharmacy", "entertainment", "jewelry"]
    )
    weights = np.array([0.28, 0.19, 0.11, 0.03, 0.06, 0.11, 0.08, 0.06, 0.07, 0.01])
    home = countries[rng.integers(0, len(countries), customers)]
    typical = rng.lognormal(3.4, 0.6, customers)
    rate = rng.gamma(2.0, 0.6, customers)  # transactions per day
    online = rng.beta(2, 5, customers)
    tenure = rng.integers(0, 900, customers)

    cust = rng.choice(customers, rows, p=rate / rate.sum())
    start = pd.Timestamp(CUTOFF) - pd.Timedelta(days=DAYS + 21)
    event_ts = start + pd.to_timedelta(rng.uniform(0, DAYS * 86400, rows), unit="s").floor("s")
    category = categories[rng.choice(len(categories), rows, p=weights)]
    channel = np.where(
        rng.random(rows) < online[cust],
        "online",
        np.where(rng.random(rows) < 0.5, "pos", "contactless"),
    )
    foreign = rng.random(rows) < 0.06
    country = np.where(foreign, abroad[rng.integers(0, len(abroad), rows)], home[cust])
    ratio = rng.lognormal(0.0, 0.55, rows)
    night = event_ts.hour < 6
    burst = rng.random(rows) < 0.02
    risky = np.isin(category, ["electronics", "digital_goods", "jewelry"])
    logit = (
        -5.7
        + 2.2 * np.log(ratio)
        + 1.5 * foreign
        + 0.9 * night
        + 0.8 * ((channel == "online") & risky)
        + 1.8 * burst
    )
    is_fraud = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    new = tenure[cust] < 1

    def counts(days: float) -> np.ndarray:
        return np.where(new, 0, rng.poisson(rate[cust] * days) + np.where(burst, 6, 0))

    c24, c7, c30 = counts(1), counts(7), counts(30)
    mean = np.where(new, np.nan, np.round(typical[cust] * rng.lognormal(0, 0.1, rows), 2))
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i:08d}" for i in range(rows)],
            "customer_id": [f"c{c:06d}" for c in cust],
            "merchant_id": [f"m{m:05d}" for m in rng.integers(0, 5000, rows)],
            "merchant_category": category,
            "amount": np.round(typical[cust] * ratio, 2),
            "currency": "EUR",
            "country": country,
            "channel": channel,
            "event_ts": event_ts,
            "dt": event_ts.normalize(),
            "batch_id": "transactions-" + event_ts.strftime("%Y-%m-%d"),
            "revision": "r0000001",
            "snapshot_cutoff": (event_ts - pd.Timedelta(hours=26)).normalize(),
            "txn_count_24h": c24,
            "txn_count_7d": c7,
            "txn_count_30d": c30,
            "amount_sum_24h": np.round(c24 * np.nan_to_num(mean), 2),
            "amount_sum_7d": np.round(c7 * np.nan_to_num(mean), 2),
            "amount_sum_30d": np.round(c30 * np.nan_to_num(mean), 2),
            "amount_mean_30d": mean,
            "amount_max_30d": np.round(mean * rng.uniform(1.5, 4.0, rows), 2),
            "distinct_merchants_30d": np.minimum(c30, rng.poisson(12, rows)),
            "distinct_categories_30d": np.minimum(c30, rng.integers(1, 8, rows)),
            "distinct_countries_30d": np.minimum(c30, 1 + rng.poisson(0.2, rows)),
            "usual_country": pd.Series(home[cust]).where(~new, None),
            "online_share_30d": np.where(new, np.nan, online[cust]),
            "last_txn_ts": (
                event_ts
                - pd.to_timedelta(rng.exponential(86400 / np.maximum(rate[cust], 0.05)), unit="s")
                * np.where(burst, 0.01, 1.0)
            ).where(~new),
            "chargebacks_30d": np.where(new, 0, rng.poisson(0.02, rows)),
            "is_fraud": is_fraud,
            "training_cutoff": CUTOFF,
        }
    )
    declared = {f.name for f in dbt_project.online_spec().features}
    missing = sorted(declared - set(frame.columns))
    if missing:
        raise RuntimeError(f"the benchmark's training set lacks declared features {missing}")
    return frame


def _env(workdir: Path, phase: str, parallel_tasks: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"MLPIPELINE_BUCKET", "AWS_ENDPOINT_URL", "WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH"}
    }
    uri = f"sqlite:///{workdir / phase / 'mlflow.db'}"
    env.update(
        MLPIPELINE_DATA_DIR=str(workdir / "data"),
        MLFLOW_TRACKING_URI=uri,
        MLPIPELINE_TRAINING_PARALLEL_TASKS=str(parallel_tasks),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    # The store exists before the clock starts, as it does for a nightly run.
    mlflow_client = model_registry.client(uri)
    model_registry.ensure_experiment(mlflow_client, model_registry.EXPERIMENT, uri)
    model_registry.ensure_registered_model(mlflow_client)
    return env


def _start(job: dict, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, float]:
    with log_path.open("wb") as task_log:
        process = subprocess.Popen(
            [sys.executable, "-c", TASK, json.dumps(job)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=task_log,
            stderr=subprocess.STDOUT,
        )
    return process, time.perf_counter()


def _finish(process: subprocess.Popen, started: float, log_path: Path) -> dict[str, float]:
    """Wait for one task; its wall time and the cores it used (CPU seconds / wall seconds)."""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    name = log_path.stem
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"training task {name} failed ({process.returncode}):\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    log.warning("task %s: %.1fs wall, %.1fs CPU, %.2f cores", name, wall, cpu, cpu / wall)
    return {"wall": wall, "cpu": cpu, "cores": cpu / wall}


def _parallel(jobs: list[dict], env: dict[str, str], logs: Path) -> tuple[float, list[dict]]:
    began = time.perf_counter()
    paths = [logs / f"parallel-{job['candidate']}.log" for job in jobs]
    running = [_start(job, env, path) for job, path in zip(jobs, paths, strict=True)]
    tasks = [_finish(*started, path) for started, path in zip(running, paths, strict=True)]
    return time.perf_counter() - began, tasks


def _sequential(jobs: list[dict], env: dict[str, str], logs: Path) -> tuple[float, list[dict]]:
    began = time.perf_counter()
    tasks = []
    for job in jobs:
        path = logs / f"sequential-{job['candidate']}.log"
        tasks.append(_finish(*_start(job, env, path), path))
    return time.perf_counter() - began, tasks


def run(workdir: Path) -> list[Result]:
    frame = training_set()
    split = split_dataset(frame)
    persist_split(LocalStore(workdir / "data" / "objectstore"), split)
    split_info = {
        "split_id": split.split_id,
        "warnings": split.warnings,
        "rows": len(frame),
        "lineage": {
            "training_cutoff": CUTOFF.isoformat(),
            "batch_revisions": dict.fromkeys(sorted(set(frame["batch_id"])), "r0000001"),
            "dbt_manifest_hash": dbt_project.manifest_hash(),
        },
    }
    shipped = yaml.safe_load((CONF_DIR / "candidates.yaml").read_text())
    names = [candidate["name"] for candidate in shipped["candidates"]]
    jobs = [{**split_info, "candidate": name} for name in names]
    log.warning(
        "training set: %d rows, %d frauds; split %s; candidates %s; %d cores",
        len(frame),
        int(frame["is_fraud"].sum()),
        split.split_id,
        names,
        os.cpu_count(),
    )

    parallel_env = _env(workdir, "parallel", 2)
    sequential_env = _env(workdir, "sequential", 1)
    logs = workdir / "logs"
    logs.mkdir()
    parallel_wall, parallel_tasks = _parallel(jobs, parallel_env, logs)
    sequential_wall, sequential_tasks = _sequential(jobs, sequential_env, logs)
    log.warning(
        "training stage: %.1fs in parallel, %.1fs one after another", parallel_wall, sequential_wall
    )
    return [
        Result.at_most(
            f"training_stage_wall_parallel_{len(jobs)}_tasks_{len(frame) // 1000}k_rows",
            parallel_wall,
            "s",
            sequential_wall,
            0.85,
        ),
        # CPU seconds the stage burnt: threads beyond a task's share only spin and wait.
        Result.at_most(
            "training_stage_cpu_parallel",
            sum(t["cpu"] for t in parallel_tasks),
            "cpu_s",
            sum(t["cpu"] for t in sequential_tasks),
            1.0,
        ),
    ]
