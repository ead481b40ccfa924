"""`POST /score` latency with the request log on against off, measured in the same run.

Two `mlpipeline serve` processes answer from the same Redis snapshot and the same champion (the
scoring benchmark's hist_gradient_boosting candidate, trained on a small day): one logs every
request to an S3 server (moto's, over HTTP in its own process, as MinIO would be) with the
default settings (batches of 1,000 or every 60 s), the other has the log off. One client sends
REQUESTS sequential requests to each over a kept-alive connection, alternating between the two
so they share the machine's noise; p50 and p99 are of those. When the servers have stopped
(the log flushed), every request of the logging server must be in the object store.

Both servers run the model with one OpenMP thread (SERVER_ENV, see there).

Target: on/off at most 1.1x, for p50 and for p99.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import duckdb

from benchmarks.bench_scoring import features_sql, train_champion
from benchmarks.harness import Result
from mlpipeline import online
from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.core.objectstore import LocalStore, S3Store
from mlpipeline.devtools import localredis
from mlpipeline.features import dbt_project
from mlpipeline.features.export import export_snapshot
from mlpipeline.scoring.request_log import read_requests

REQUESTS = 2_000
WARMUP = 100
CUSTOMERS_ROWS = 50_000  # transactions the snapshot's customers are drawn from
TRAIN_ROWS = 20_000
CUTOFF = date(2026, 2, 28)
BUCKET = "bench-serving"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
VARIANTS = ("off", "on")
# One OpenMP thread per server: the model's predict_proba otherwise parallelises one row over
# every core, and on a busy machine its threads' barrier stalls a request for up to ~1 s (16 % of
# requests over 0.3 s at load 7 on 2 cores, none with one thread): p99 measured that, not the log.
SERVER_ENV = {"OMP_NUM_THREADS": "1"}


def _switch_snapshot(redis_url: str, workdir: Path) -> list[str]:
    """A snapshot of the declared online features switched into Redis; its customer ids."""
    spec = dbt_project.online_spec()
    store = LocalStore(workdir / "objectstore")
    names = ", ".join(f.name for f in spec.features)
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA features")
        con.execute(
            f"CREATE TABLE features.customer_snapshot AS SELECT DISTINCT ON (customer_id) "
            f"customer_id, DATE '{CUTOFF}' AS cutoff_date, {names} "
            f"FROM ({features_sql(CUTOFF, CUSTOMERS_ROWS)}) ORDER BY customer_id"
        )
        rows = con.execute("SELECT customer_id FROM features.customer_snapshot").fetchall()
        manifest = export_snapshot(con, store, CUTOFF, spec, "bench").manifest
    online.push_staged(redis_url, store, manifest)
    online.verify_staged(redis_url, manifest)
    online.switch(redis_url, manifest)
    return [customer for (customer,) in rows]


def _start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A child process that prints its URL on its first line of output."""
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise RuntimeError(f"{argv} did not start: {line!r}")
    return process, line


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, as `docker stop` sends: uvicorn stops gracefully, then re-raises it."""
    process.send_signal(signal.SIGTERM)
    if process.wait(120) not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{process.args} ended with {process.returncode}")


def _bodies(customers: list[str]) -> list[bytes]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return [
        json.dumps(
            {
                "transaction_id": f"bench-{i}",
                "customer_id": customers[(i * 7919) % len(customers)],
                "merchant_id": f"m{i % 500}",
                "merchant_category": ("grocery", "electronics", "travel", "fuel")[i % 4],
                "amount": round(5 + (i * 37) % 900 + 0.25, 2),
                "currency": "EUR",
                "country": ("NL", "DE", "US", "FR")[i % 4],
                "channel": ("online", "pos", "contactless")[i % 3],
                "event_ts": now,
            }
        ).encode()
        for i in range(WARMUP + REQUESTS)
    ]


def _post(connection: http.client.HTTPConnection, body: bytes) -> float:
    started = time.perf_counter()
    connection.request("POST", "/score", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"/score answered {response.status}: {answer[:300]!r}")
    return elapsed


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


def _latencies(urls: dict[str, str], bodies: list[bytes]) -> dict[str, tuple[float, float]]:
    """p50/p99 in ms per variant; who goes first alternates, after a warm-up of each."""
    connections = {
        v: http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=30)
        for v, url in urls.items()
    }
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for turn, body in enumerate(bodies):
        order = VARIANTS if turn % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            elapsed = _post(connections[variant], body)
            if turn >= WARMUP:
                samples[variant].append(elapsed)
    for connection in connections.values():
        connection.close()
    return {v: _percentiles(s) for v, s in samples.items()}


def run(workdir: Path) -> list[Result]:
    settings = Settings.under(workdir / "data")
    train_champion(settings, TRAIN_ROWS)
    redis_url, _ = localredis.start(workdir / "redis", persist=False)
    s3_port = localredis.free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        env={**os.environ, **S3_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    servers: dict[str, subprocess.Popen] = {}
    try:
        customers = _switch_snapshot(redis_url, workdir)
        for name, value in S3_ENV.items():
            os.environ.setdefault(name, value)
        for _ in range(100):  # moto's server takes a moment to listen
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        urls = {}
        for variant in VARIANTS:
            servers[variant], urls[variant] = _start(
                [sys.executable, "-m", "benchmarks.bench_serving", variant, str(workdir)],
                {**S3_ENV, **SERVER_ENV, "REDIS_URL": redis_url, "AWS_ENDPOINT_URL": endpoint},
            )
        day = datetime.now(UTC).date()
        latency = _latencies(urls, _bodies(customers))
        for variant in VARIANTS:
            _stop(servers.pop(variant))
        store = S3Store(BUCKET, endpoint)
        logged = sum(len(read_requests(store, d)) for d in {day, datetime.now(UTC).date()})
        if logged != WARMUP + REQUESTS:
            raise RuntimeError(f"the logging server wrote {logged} requests, not all it answered")
    finally:
        for process in [*servers.values(), moto]:
            process.kill()
            process.wait()
        localredis.stop(redis_url)

    (off50, off99), (on50, on99) = latency["off"], latency["on"]
    print(f"/score p50 on/off {on50 / off50:.3f}, p99 on/off {on99 / off99:.3f}", flush=True)
    return [
        Result.at_most("score_p50_request_log_on_vs_off", on50, "ms", off50, 1.1),
        Result.at_most("score_p99_request_log_on_vs_off", on99, "ms", off99, 1.1),
    ]


def _serve(variant: str, workdir: Path) -> None:
    """One scoring server of the benchmark (this process): prints its URL, serves until SIGTERM."""
    from mlpipeline.scoring.serve import make_server

    settings = Settings.under(workdir / "data").model_copy(
        update={
            "bucket": BUCKET,
            "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "request_log_enabled": variant == "on",
        }
    )
    server = make_server("127.0.0.1", 0, settings=settings, redis_url=os.environ["REDIS_URL"])
    print(server.url, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    _serve(sys.argv[1], Path(sys.argv[2]))
