"""The production stack runs: docker-compose.yml's services started as processes, and a nightly
run by the scheduler on two Celery workers.

tests/stack_compose.py starts every service of the compose file (not a copy of it) with its
command, environment, volumes, init steps and start order: PostgreSQL, the Celery broker Redis,
the password-protected features Redis, an S3 server standing in for MinIO (with minio-init's
buckets), the MLflow server with its artifacts in S3, airflow-init, the API server, scheduler,
DAG processor, triggerer, two Celery workers sharing no folder (the warehouse is a DuckLake: its
catalog in PostgreSQL, its files in the bucket), and the scoring API.
The .env is .env.example with fresh secrets, as a user would write it.

History lands in the bucket and is loaded with the library's catch-up, both as one-off
containers of the worker service (`docker compose run airflow-worker mlpipeline ...`). Then
fraud_nightly is unpaused and the scheduler runs last night, D = yesterday (UTC), as it would in
production. Afterwards a third worker pointed at another catalog takes a run and must fail
naming the catalog it looked for, creating nothing.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mlpipeline.warehouse import lake
from tests.stack_compose import Machine, Stack
from tests.stack_driver import (
    BACKFILL,
    DAG,
    RUN_TIMEOUT_S,
    WORKERS,
    Api,
    dotenv,
    one_off,
    run_of,
    start_services,
    task_log,
)

pytestmark = pytest.mark.stack

log = logging.getLogger(__name__)

NIGHT = datetime.now(UTC).date() - timedelta(days=1)
START = NIGHT - timedelta(days=45)
# The demo's population: the days are the calendar's (last night is yesterday), so the data
# changes every day, and with 300 customers the test part of some days' split held too few
# frauds for the night's candidate to beat the single-feature baseline (no champion, no scores;
# seen for the night of 2026-12-05). The demo, at this size, has promoted on every run so far.
CUSTOMERS = 2000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = [name for name in ("initdb", "redis-server") if not _server_binary(name)]
    if missing:
        message = f"{missing} missing: `make stack-deps system-deps` as root installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the stack test must run)")
        pytest.skip(message)
    machine = Machine(tmp_path_factory.mktemp("stack"))
    running = Stack(machine, dotenv(machine))
    try:
        start_services(running)
        yield running
    finally:
        running.stop()
        log.warning("stack logs: %s", running.log_dir)


def _server_binary(name: str) -> bool:
    return bool(shutil.which(name) or glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))


@pytest.fixture(scope="module")
def api(stack: Stack) -> Api:
    env = stack.container_env("scoring-api")
    return Api(stack.machine.url("airflow-apiserver"), env["AIRFLOW_API_USERNAME"],
               env["AIRFLOW_API_PASSWORD"])  # fmt: skip


@pytest.fixture(scope="module")
def night(stack: Stack, api: Api) -> dict[str, Any]:
    """History landed and caught up, then last night run by the scheduler once unpaused."""
    days = ["--start", START.isoformat(), "--end"]
    generate = ["mlpipeline", "generate", *days, NIGHT.isoformat(), "--customers", str(CUSTOMERS)]
    one_off(stack, generate, "one-off-generate")
    catchup = ["mlpipeline", "catchup", *days, (NIGHT - timedelta(days=1)).isoformat()]
    one_off(stack, catchup, "one-off-catchup")
    stack.wait_until("fraud_nightly parsed", lambda: api.get(f"dags/{DAG}")["is_paused"], 240)
    began = time.monotonic()
    api.patch(f"dags/{DAG}", {"is_paused": False})
    stack.wait_until("last night's run", lambda: bool(run_of(api, NIGHT)), timeout=120)
    run = run_of(api, NIGHT)
    state = api.wait_for_run(run["dag_run_id"], RUN_TIMEOUT_S, stack)
    log.info("stack: the nightly took %.0fs", time.monotonic() - began)
    return {"run": run, "state": state, "tis": api.task_instances(DAG, run["dag_run_id"])}


def test_every_task_of_the_scheduled_night_succeeded(night):
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in night["tis"]}
    assert night["state"] == "success", {k: v for k, v in states.items() if v != "success"}
    assert len(states) > 40
    # Every task succeeded; the watcher, which runs only when one failed, was skipped.
    assert {k: v for k, v in states.items() if v != "success"} == {("watcher", -1): "skipped"}


def test_task_instances_ran_on_both_workers(stack, night):
    ran: dict[str, set[str]] = {}
    for worker in WORKERS:
        text = (stack.log_dir / f"{worker}.log").read_text(errors="replace")
        ran[worker] = set(re.findall(r"Executing workload in Celery: .*?task_id='([^']+)'", text))
    assert all(ran.values()), ran
    # Every task but the EmptyOperator joins (the scheduler completes those itself) and the
    # watcher, skipped on a good night without running anywhere.
    executed = {
        ti["task_id"]
        for ti in night["tis"]
        if ti["operator"] != "EmptyOperator" and ti["state"] != "skipped"
    }
    assert set().union(*ran.values()) == executed
    for worker in WORKERS:
        assert stack.healthy("airflow-worker", worker), f"{worker} fails its healthcheck"


def _project_env(stack: Stack) -> dict[str, str]:
    return stack.container_env("scoring-api")


def test_the_days_scores_are_in_the_delta_table_on_s3(stack, night):
    from deltalake import DeltaTable

    env = _project_env(stack)
    options = {
        "AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": env["AWS_DEFAULT_REGION"],
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    uri = f"s3://{env['MLPIPELINE_BUCKET']}/scores/transaction_scores"
    scores = DeltaTable(uri, storage_options=options).to_pandas()
    day = scores[scores["dt"].astype(str) == NIGHT.isoformat()]
    assert len(day) > 0
    assert day["transaction_id"].is_unique
    assert day["model_version"].notna().all()


def _s3(env: dict[str, str]) -> Any:  # noqa: ANN401 - a boto3 client
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def test_a_champion_with_its_artifacts_in_s3(stack, night):
    from mlflow import MlflowClient

    env = _project_env(stack)
    # Both URIs given: an earlier test of the session may have set a process-wide registry.
    uri = env["MLFLOW_TRACKING_URI"]
    assert uri.startswith("http://127.0.0.1:")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("fraud_detector", "champion")
    assert client.get_run(champion.run_id).data.tags["training_cutoff"] == NIGHT.isoformat()
    s3 = _s3(env)
    bucket = stack.dotenv["MLFLOW_BUCKET"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(key.endswith("MLmodel") for key in keys), keys[:20]


def test_the_features_redis_serves_the_new_snapshot(stack, night):
    env = _project_env(stack)
    result = subprocess.run(
        [str(Path(stack.command("scoring-api")[0])), "online", "status"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert NIGHT.isoformat() in result.stdout


def test_the_scoring_api_answers(stack, night):
    url = stack.machine.url("scoring-api")
    stack.wait_until("scoring-api", lambda: _status(url + "/health") == 200, timeout=120)
    body = {
        "transaction_id": "stack-t-1",
        "customer_id": "c000001",
        "merchant_id": "m0001",
        "merchant_category": "electronics",
        "amount": 42.5,
        "currency": "EUR",
        "country": "FR",
        "channel": "online",
        "event_ts": f"{NIGHT + timedelta(days=1)}T09:00:00Z",
    }
    request = urllib.request.Request(
        url + "/score", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert 0.0 <= answer["score"] <= 1.0
    assert answer["snapshot_cutoff"] == NIGHT.isoformat()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_the_workers_share_no_folder(stack):
    """Nothing a task needs is on a worker's disk: no volume is mounted on two workers."""
    spec = stack.services["airflow-worker"]
    mounted = [v.split(":")[0] for v in spec.get("volumes", [])]
    assert mounted == ["airflow-logs"], mounted  # task logs, which the API server reads
    folders = {w: stack.machine.container_dir(w, "/data/mlpipeline") for w in WORKERS}
    assert folders[WORKERS[0]] != folders[WORKERS[1]]


def test_the_analysts_role_reads_the_warehouse_and_writes_nothing(stack, night, monkeypatch):
    """The role airflow-init grants (`warehouse_reader`, the .env's password), attached as
    docs/using.md tells analysts: last night's features are there to read, and a write is
    refused by PostgreSQL itself."""
    env = _project_env(stack)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, env[name])
    owner = f"//airflow:{stack.dotenv['POSTGRES_PASSWORD']}@"
    reader = f"//warehouse_reader:{stack.dotenv['WAREHOUSE_READER_PASSWORD']}@"
    assert owner in env["WAREHOUSE_CATALOG"]
    catalog = env["WAREHOUSE_CATALOG"].replace(owner, reader)
    with lake.connect(catalog, env["WAREHOUSE_DATA_PATH"], create=False) as con:
        rows = con.execute(
            "SELECT count(*) FROM features.customer_snapshot WHERE cutoff_date = ?", [NIGHT]
        ).fetchall()
        assert rows[0][0] > 0
        with pytest.raises(duckdb.Error, match="permission denied"):
            con.execute("DELETE FROM raw.transactions")


BACKFILLED = [NIGHT - timedelta(days=2), NIGHT - timedelta(days=1)]
WAIT = "ingest_transactions.wait_for_transactions"


def _backfill(stack: Stack, api: Api, broken_until: str) -> dict[str, Any]:
    """Trigger fraud_backfill over BACKFILLED with the first day's transactions `_SUCCESS`
    unreadable (a producer rewriting it) until `broken_until`: "retry" (the first attempt of
    the task reading it has failed) or "end" (the backfill is over). What the runs did."""
    env = _project_env(stack)
    s3, bucket = _s3(env), env["MLPIPELINE_BUCKET"]
    key = f"landing/transactions/dt={BACKFILLED[0]}/_SUCCESS"
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=b"{half a marker")
    conf = {"start": str(BACKFILLED[0]), "end": str(BACKFILLED[-1]), "push_online": False}
    run_id = f"stack-backfill-{secrets.token_hex(3)}"
    api.post(f"dags/{BACKFILL}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    try:
        if broken_until == "retry":
            stack.wait_until(f"{WAIT} to fail an attempt", lambda: _retrying(api), timeout=600)
            s3.put_object(Bucket=bucket, Key=key, Body=good)
        state = api.wait_for_end(run_id, RUN_TIMEOUT_S * 3, dag=BACKFILL)
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=good)
    runs = {day: _nightly_run(api, day) for day in BACKFILLED}
    return {
        "state": state,
        "runs": runs,
        "tis": {day: api.task_instances(DAG, r["dag_run_id"]) for day, r in runs.items() if r},
        "log": task_log(stack, run_id, "await_backfill"),
    }


def _retrying(api: Api) -> bool:
    run = _nightly_run(api, BACKFILLED[0])
    states = (
        {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, run["dag_run_id"])}
        if run
        else {}
    )
    return states.get(WAIT) == "up_for_retry"


def _nightly_run(api: Api, day: date) -> dict | None:
    """The nightly's backfill run of `day` (its data interval is the day, as scheduled)."""
    found = [
        r
        for r in api.runs()
        if r["run_type"] == "backfill" and r["data_interval_start"].startswith(day.isoformat())
    ]
    return found[0] if found else None


@pytest.fixture(scope="module")
def backfills(stack: Stack, api: Api, night: dict[str, Any]) -> dict[str, Any]:
    """The two days before last night, backfilled twice: once with a day that fails an attempt
    and passes on retry, once with a day that fails for good."""
    api.patch(f"dags/{BACKFILL}", {"is_paused": False})
    return {"retried": _backfill(stack, api, "retry"), "failed": _backfill(stack, api, "end")}


def test_a_backfill_runs_its_days_oldest_first_through_a_retry(backfills):
    retried = backfills["retried"]
    first, second = (retried["runs"][day] for day in BACKFILLED)
    assert retried["state"] == "success", retried["log"][-3000:]
    assert first["state"] == "success" and second["state"] == "success"
    # One at a time, oldest first: the second day started after the first had finished, the
    # first day's retry included.
    assert second["start_date"] >= first["end_date"]
    attempts = {ti["task_id"]: ti["try_number"] for ti in retried["tis"][BACKFILLED[0]]}
    assert attempts[WAIT] == 2, attempts
    assert "2/2 days done" in retried["log"]


def test_a_backfill_stops_at_a_failed_day_and_names_it(backfills):
    failed = backfills["failed"]
    first, second = (failed["runs"][day] for day in BACKFILLED)
    assert failed["state"] == "failed"
    assert first["state"] == "failed"
    first_states = {ti["task_id"]: ti["state"] for ti in failed["tis"][BACKFILLED[0]]}
    assert first_states[WAIT] == "failed" and first_states["watcher"] == "failed"
    # The failed run's watcher cancelled the backfill: the second day never started a task.
    assert second["state"] == "failed"
    # (Its task instances were cleared when the backfill was created and never queued again.)
    assert all(ti["state"] is None for ti in failed["tis"][BACKFILLED[1]]), failed["tis"]
    assert f"fraud_nightly failed for {BACKFILLED[0]}" in failed["log"]
    assert f"did not run {BACKFILLED[1]}" in failed["log"]


def test_a_worker_pointed_at_another_catalog_fails_loudly_and_creates_nothing(stack, api, night):
    """A third worker whose WAREHOUSE_CATALOG names a database setup never made a warehouse in
    (Airflow's own): its warehouse task fails naming that catalog, and DuckLake makes no
    tables there."""
    for worker in WORKERS:
        stack.stop_container(worker)
    container = "airflow-worker-elsewhere"
    env = stack.container_env("airflow-worker", container)
    env["WAREHOUSE_CATALOG"] = env["WAREHOUSE_CATALOG"].replace("/warehouse", "/airflow")
    stack.start("airflow-worker", container=container, env=env)
    # After midnight UTC the unpaused nightly starts the new day's scheduled run, which waits for
    # a landing that never comes and, the DAG allowing one active run, would keep this manual run
    # queued: such a run is failed first.
    for stray in api.runs():
        if stray["run_type"] == "scheduled" and stray["state"] in {"queued", "running"}:
            api.patch(api.run_path(DAG, stray["dag_run_id"]), {"state": "failed"})
    run_id = f"stack-elsewhere-{secrets.token_hex(3)}"
    day = BACKFILLED[0] - timedelta(days=1)  # a day no run has yet
    api.post(
        f"dags/{DAG}/dagRuns",
        {"dag_run_id": run_id, "logical_date": f"{day}T00:00:00Z", "conf": {"train": False}},
    )
    task = "ingest_transactions.load_transactions"

    def attempt_failed() -> bool:
        # The stack retries failed tasks (AIRFLOW__CORE__DEFAULT_TASK_RETRIES): the first
        # attempt's failure is what matters here.
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, run_id)}
        assert states.get(task) != "success", f"{task} succeeded without the warehouse"
        return states.get(task) in {"up_for_retry", "failed"}

    stack.wait_until(f"{task} to fail", attempt_failed, timeout=300)
    text = task_log(stack, run_id, task)
    assert "WarehouseMissing" in text
    assert "no warehouse at DuckLake postgres:postgresql://airflow:***@" in text
    assert "/airflow (data s3://" in text and "WAREHOUSE_CATALOG" in text
    import psycopg

    with psycopg.connect(env["WAREHOUSE_CATALOG"].removeprefix("postgres:")) as db:
        made = db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ducklake%'")
        assert made.fetchone() == (0,)
