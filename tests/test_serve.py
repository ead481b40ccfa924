"""Online scoring (`mlpipeline serve`) against real components: a dbt-built warehouse, a snapshot
exported and switched into a real Redis server, a champion registered in a real MLflow store,
and the HTTP endpoint over a real socket.

The parity test scores the same transactions twice: through `POST /score` (vector from Redis)
and through `mlpipeline.scoring.score.score_day` (the batch code, reading dbt's point-in-time join),
against the same snapshot, and requires the same scores.

The request log tests write to moto's S3 server over HTTP: the log of what was served, found
under its UTC day after the server stops; a store that hangs (the buffer fills, requests are
still answered at once, the overflow is counted); a store that is down (requests answered, the
loss counted and logged).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.config import Config
from sklearn.linear_model import LogisticRegression

from mlpipeline import online, warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore, ObjectStore, S3Store
from mlpipeline.devtools.localredis import free_port
from mlpipeline.features import dbt_project, transform
from mlpipeline.features.export import export_snapshot
from mlpipeline.scoring import score, score_table
from mlpipeline.scoring.request_log import FEATURE_PREFIX, read_requests
from mlpipeline.scoring.serve import ScoringServer, make_server
from mlpipeline.training import model_registry
from mlpipeline.training.model_artifact import TRUSTED_TYPES
from mlpipeline.training.model_features import build_pipeline, select_feature_columns
from mlpipeline.warehouse import connect
from tests.champion import register_champion
from tests.dbt_fixtures import background, load_raw, txn
from tests.e2e_env import OVERRIDES

pytestmark = pytest.mark.integration

FIRST = date(2026, 1, 1)
CUTOFF = date(2026, 1, 20)  # the snapshot switched into Redis
DAY = CUTOFF + timedelta(days=1)  # its transactions after 02:00 see that snapshot

# Transactions of DAY on top of the background traffic: an unknown customer, a foreign
# country, a large amount, and one before the publication lag (it sees the older snapshot).
EXTRA = [
    txn("x-new", "c-brand-new", "2026-01-21 10:00:00", "80.00", channel="online"),
    txn("x-abroad", "bg-c03", "2026-01-21 11:30:00", "950.00", country="US", channel="online"),
    txn("x-big", "bg-c05", "2026-01-21 23:59:59", "399.99", category="electronics"),
    txn("x-early", "bg-c07", "2026-01-21 01:59:59", "20.00"),
]


def _post(url: str, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _register_champion(settings: Settings) -> model_registry.ChampionRef:
    """A real Pipeline (request-time features included) fitted on the warehouse's rows."""
    with connect(settings, read_only=True) as con:
        frame = con.execute("SELECT * FROM features.transaction_features WHERE dt < ?", [DAY]).df()
    label = ((frame["amount"].astype(float) > 250) | (frame["txn_count_24h"] >= 2)).astype(int)
    assert 0 < label.sum() < len(label)
    columns = select_feature_columns(dbt_project.online_spec().features)
    pipeline = build_pipeline(LogisticRegression(max_iter=2000), columns, scale=True)
    pipeline.fit(frame, label)
    register_champion(settings, pipeline, CUTOFF, trusted_types=TRUSTED_TYPES)
    return model_registry.resolve_champion(settings.mlflow_tracking_uri)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[dict]:
    """dbt-built features, Redis switched to cutoff CUTOFF, a champion, a running server.

    Built once for the module, on its own data folder and its own Redis database.
    """
    data_dir = tmp_path_factory.mktemp("serve")
    redis_url = redis_server.rsplit("/", 1)[0] + "/5"
    online.redis_client(redis_url).flushdb()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
        for var in OVERRIDES:
            env.delenv(var, raising=False)
        env.setenv("REDIS_URL", redis_url)
        settings = Settings.from_env()
        transactions, chargebacks = background(FIRST, DAY, customers=24, seed=3)
        warehouse.create(settings)
        with connect(settings) as con:
            load_raw(con, "transactions", transactions + EXTRA)
            load_raw(con, "chargebacks", chargebacks)
        transform.build(DAY, settings=settings, full_refresh=True)
        champion = _register_champion(settings)

        store = LocalStore(settings.local_store_root)
        with connect(settings, read_only=True) as con:
            manifest = export_snapshot(
                con, store, CUTOFF, dbt_project.online_spec(), dbt_project.manifest_hash()
            ).manifest
        online.push_staged(redis_url, store, manifest)
        online.verify_staged(redis_url, manifest)
        online.switch(redis_url, manifest)

        server = make_server("127.0.0.1", 0, settings=settings)  # REDIS_URL from the env
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {
                "url": server.url,
                "champion": champion,
                "manifest": manifest,
                "settings": settings,
                "redis_url": redis_url,
            }
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            online.redis_client(redis_url).flushdb()


def test_endpoint_and_batch_scoring_agree_on_the_same_snapshot(served):
    settings = served["settings"]
    champion = served["champion"]
    result = score.score_day(
        DAY,
        settings=settings,
        champion=champion,
        load_model=model_registry.load_model,
        run_id="parity",
    )
    assert result.rows_scored > 20
    batch = score_table.read_scores(settings, DAY).set_index("transaction_id")
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT transaction_id, customer_id, merchant_id, merchant_category, amount, "
            "currency, country, channel, event_ts FROM raw.transactions_current WHERE dt = ? "
            "ORDER BY transaction_id",
            [DAY],
        ).df()
    # The endpoint serves the current snapshot; batch rows saw the snapshot available at their
    # time. Compare where that is the same snapshot (all but the early transaction).
    same = batch.loc[rows["transaction_id"], "snapshot_cutoff"].to_numpy() == CUTOFF
    assert (~same).sum() >= 1 and "x-early" not in set(rows["transaction_id"][same])
    sample = rows[same]
    assert len(sample) > 20

    answers = {}
    for row in sample.to_dict("records"):
        body = {
            **row,
            "amount": float(row["amount"]),
            "event_ts": row["event_ts"].isoformat() + "Z",
        }
        status, answer = _post(served["url"] + "/score", body)
        assert status == 200, answer
        answers[row["transaction_id"]] = answer

    differences = {
        tid: (answer["score"], batch.at[tid, "score"])
        for tid, answer in answers.items()
        if abs(answer["score"] - batch.at[tid, "score"]) > 1e-12
        or answer["decision"] != batch.at[tid, "decision"]
    }
    assert differences == {}
    assert {a["model_version"] for a in answers.values()} == {champion.version}
    assert set(batch.loc[list(answers), "model_version"]) == {champion.version}
    assert {a["snapshot_cutoff"] for a in answers.values()} == {CUTOFF.isoformat()}
    assert {a["snapshot_export_id"] for a in answers.values()} == {served["manifest"]["export_id"]}
    assert answers["x-new"]["customer_known"] is False  # defaults, as the dbt join gives
    assert answers["x-abroad"]["customer_known"] is True
    scores = [a["score"] for a in answers.values()]
    assert len({round(s, 6) for s in scores}) > len(scores) // 2  # a model, not a constant
    assert any(a["decision"] for a in answers.values())


def test_endpoint_errors_say_what_is_wrong(served):
    url = served["url"]
    status, health = _get(url + "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["model_version"] == served["champion"].version
    assert health["snapshot_cutoff"] == CUTOFF.isoformat()

    status, answer = _post(
        url + "/score", {"customer_id": "bg-c01", "amount": -3, "event_ts": "yesterday"}
    )
    assert status == 400
    for problem in (
        "amount: expected a positive number, got -3",
        "event_ts: Invalid isoformat string",
        "merchant_category: expected a non-empty string, got None",
        "country: expected a non-empty string, got None",
    ):
        assert problem in answer["error"]
    status, answer = _post(url + "/score", b"{not json")
    assert status == 400 and answer["error"].startswith("the body is not JSON")
    status, answer = _post(url + "/score", [1, 2])
    assert status == 400 and "one transaction as a JSON object" in answer["error"]
    assert _post(url + "/nowhere", {}) == (404, {"error": "no such endpoint: POST /nowhere"})
    assert _get(url + "/score") == (405, {"error": "method not allowed: GET /score"})
    assert _post(url + "/score", b"x" * 70_000)[0] == 413
    # The OpenAPI schema describes the request model (the page is /docs).
    status, schema = _get(url + "/openapi.json")
    assert status == 200
    required = schema["components"]["schemas"]["Transaction"]["required"]
    text = {"customer_id", "merchant_category", "country", "channel"}
    assert set(required) == text | {"amount", "event_ts"}

    # No champion yet: 503 "no model yet" rather than a guess; once one is promoted the
    # running server picks it up without a restart.
    settings, champion = served["settings"], served["champion"]
    registry = model_registry.client(settings.mlflow_tracking_uri)
    name, alias = model_registry.MODEL_NAME, model_registry.CHAMPION_ALIAS
    registry.delete_registered_model_alias(name, alias)
    server = make_server(
        "127.0.0.1", 0, settings=settings, redis_url=served["redis_url"], model_refresh_seconds=0
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        body = {
            "customer_id": "bg-c01",
            "merchant_category": "grocery",
            "country": "NL",
            "channel": "pos",
            "amount": 12.5,
            "event_ts": "2026-01-21T10:00:00Z",
        }
        status, answer = _post(server.url + "/score", body)
        assert status == 503 and "no model yet" in answer["error"]
        assert _get(server.url + "/health")[0] == 503
        registry.set_registered_model_alias(name, alias, champion.version)
        status, answer = _post(server.url + "/score", body)
        assert status == 200 and answer["model_version"] == champion.version
        assert answer["transaction_id"] is None and 0 <= answer["score"] <= 1
        # The body is JSON whatever its Content-Type (`curl -d` sends a form's).
        form = _post(server.url + "/score", body, "application/x-www-form-urlencoded")
        assert form == (200, answer)
    finally:
        registry.set_registered_model_alias(name, alias, champion.version)
        server.shutdown()
        server.server_close()
        thread.join()


def _bodies(count: int, prefix: str) -> list[dict]:
    """Transactions of known customers (and one unknown), distinct ids and amounts."""
    return [
        {
            "transaction_id": f"{prefix}-{i}",
            "customer_id": "c-never-seen" if i == 0 else f"bg-c{i % 24:02d}",
            "merchant_id": f"m{i}",
            "merchant_category": "electronics",
            "amount": 10.5 + i,
            "currency": "EUR",
            "country": "DE" if i % 2 else "NL",
            "channel": "online",
            "event_ts": f"2026-01-21T{i % 24:02d}:15:00Z",
        }
        for i in range(count)
    ]


@contextmanager
def _logging_server(
    served: dict, store: ObjectStore, **request_log: float
) -> Iterator[ScoringServer]:
    """A second server on the module's Redis and champion, logging requests to `store` with
    these request_log_* settings; stopped (so its log flushed) on leaving."""
    settings = served["settings"].model_copy(
        update={f"request_log_{name}": value for name, value in request_log.items()}
    )
    server = make_server(
        "127.0.0.1", 0, settings=settings, redis_url=served["redis_url"], request_store=store
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _logged(store: ObjectStore, first: date) -> pd.DataFrame:
    """The requests logged from UTC day `first` to today (a test may cross midnight)."""
    days = [first + timedelta(days=n) for n in range((datetime.now(UTC).date() - first).days + 1)]
    frames = [read_requests(store, day) for day in days]
    return pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)


def test_served_requests_are_logged_under_their_utc_day(served, s3_store):
    bodies = _bodies(10, "log")
    started = datetime.now(UTC)
    with _logging_server(served, s3_store, batch_size=4, flush_seconds=60) as server:
        answers = {}
        for body in bodies:
            status, answer = _post(server.url + "/score", body)
            assert status == 200, answer
            answers[body["transaction_id"]] = answer
        status, health = _get(server.url + "/health")
        assert status == 200
        assert health["request_log"]["accepted"] == 10
        assert health["request_log"]["dropped_queue_full"] == 0
    ended = datetime.now(UTC)
    stats = server.scorer.request_log.stats()
    assert (stats.written, stats.queued, stats.dropped_upload_failed) == (10, 0, 0)
    # Two full batches of 4, the last 2 flushed at shutdown (a batch across midnight: 2 files).
    assert stats.files_written == 3 or (started.date() != ended.date() and stats.files_written == 4)

    keys = s3_store.list("serving/requests/")
    assert len(keys) == stats.files_written
    for key in keys:
        day = key.split("/")[2]
        assert day in {f"dt={started.date()}", f"dt={ended.date()}"}, key
        assert Path(key).name.endswith(".parquet") and f"-{os.getpid()}-" in key

    logged = _logged(s3_store, started.date()).set_index("transaction_id")
    assert sorted(logged.index) == sorted(answers)
    reader = online.OnlineReader(served["redis_url"])
    for body in bodies:
        row, answer = logged.loc[body["transaction_id"]], answers[body["transaction_id"]]
        assert started <= row["request_ts"] <= ended
        for field in ("customer_id", "merchant_id", "merchant_category", "country", "channel"):
            assert row[field] == body[field]
        assert row["amount"] == body["amount"]
        assert row["event_ts"] == pd.Timestamp(body["event_ts"][:-1])
        for field in (
            "score",
            "decision",
            "decision_threshold",
            "model_name",
            "model_version",
            "snapshot_cutoff",
            "snapshot_export_id",
            "customer_known",
        ):
            assert row[field] == answer[field], field
        served_features = reader.get(body["customer_id"])
        assert served_features  # the online feature set is not empty
        for name, value in served_features.items():
            logged_value = row[FEATURE_PREFIX + name]
            assert (pd.isna(logged_value) and value is None) or logged_value == value, name
    assert not logged.loc["log-0", "customer_known"]  # the unknown customer's defaults
    assert logged["snapshot_export_id"].unique().tolist() == [served["manifest"]["export_id"]]


class _HungStore:
    """The real S3 store behind a gate: writes wait until the test opens it."""

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.url = store.url
        self.gate = threading.Event()

    def put_bytes(self, key: str, data: bytes) -> None:
        self.gate.wait()
        self.store.put_bytes(key, data)


def test_a_full_request_log_drops_and_counts_without_holding_requests(served, s3_store, caplog):
    caplog.set_level(logging.WARNING, logger="mlpipeline.scoring.request_log")
    store = _HungStore(s3_store)
    bodies = _bodies(30, "full")
    started = datetime.now(UTC)
    with _logging_server(served, store, queue_size=5, batch_size=2, flush_seconds=60) as server:
        try:
            # The writer holds its first batch of 2 in a write that does not return, the buffer
            # fills with 5: a request waiting on either would never be answered.
            seconds = []
            for body in bodies:
                began = time.perf_counter()
                status, answer = _post(server.url + "/score", body)
                seconds.append(time.perf_counter() - began)
                assert status == 200, answer
            status, health = _get(server.url + "/health")
            assert status == 200
            counts = health["request_log"]
            assert (counts["accepted"], counts["queued"], counts["written"]) == (7, 5, 0)
            assert counts["dropped_queue_full"] == 23
            assert max(seconds) < 5
        finally:
            store.gate.set()
    stats = server.scorer.request_log.stats()
    assert (stats.written, stats.dropped_queue_full, stats.dropped_upload_failed) == (7, 23, 0)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "buffer full (5 requests)" in warnings[0]  # once, not 23 times
    logged = _logged(s3_store, started.date())
    assert len(logged) == 7 and logged["transaction_id"].is_unique
    assert set(logged["transaction_id"]) <= {b["transaction_id"] for b in bodies}


def test_an_object_store_that_is_down_fails_no_request_and_the_loss_is_counted(served, caplog):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store("requests", down)
    # One HTTP attempt per write, so the log's own retries are what the test sees.
    store.client = boto3.client("s3", endpoint_url=down, config=Config(retries={"max_attempts": 1}))
    caplog.set_level(logging.WARNING, logger="mlpipeline.scoring.request_log")
    with _logging_server(served, store, batch_size=100, flush_seconds=60) as server:
        for body in _bodies(6, "down"):
            status, answer = _post(server.url + "/score", body)
            assert status == 200, answer
    stats = server.scorer.request_log.stats()
    assert (stats.accepted, stats.written, stats.dropped_upload_failed) == (6, 0, 6)
    assert "Could not connect" in (stats.last_error or "")
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "attempt" in r.message]
    assert len(retries) == 2  # attempts 1 and 2 of 3 retried, the third gives up
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "6 requests dropped" in errors[0] and f"object store {store.url}" in errors[0]


def test_mlpipeline_serve_flushes_its_request_log_on_sigterm(served, s3_store, s3_endpoint):
    """As `docker stop` stops it: uvicorn stops gracefully on SIGTERM, then re-raises it."""
    port = free_port()
    env = {
        **os.environ,
        "MLPIPELINE_DATA_DIR": str(served["settings"].data_dir),
        "REDIS_URL": served["redis_url"],
        "MLPIPELINE_BUCKET": s3_store.bucket,
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    command = [sys.executable, "-m", "mlpipeline.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    started = datetime.now(UTC)
    try:
        deadline = time.monotonic() + 120
        while _health_status(url) != 200:
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        for body in _bodies(5, "term"):
            assert _post(url + "/score", body)[0] == 200
        assert not s3_store.list("serving/requests/")  # nothing written before the stop
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) in (0, -signal.SIGTERM)
    finally:
        process.kill()
        process.wait()
    logged = _logged(s3_store, started.date())
    assert sorted(logged["transaction_id"]) == [f"term-{i}" for i in range(5)]


def _health_status(url: str) -> int | None:
    try:
        return _get(url + "/health")[0]
    except OSError:  # not listening yet
        return None
