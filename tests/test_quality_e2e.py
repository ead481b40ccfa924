"""End to end: the quality gates stop bad data in `fraud_nightly` runs (`airflow dags test`).

On a copy of the session's history (tests/history.py), its last day is published first with the
nightly's own stage functions (a champion registered up front, so that scoring writes the score
table, and Redis switched to the day's snapshot). Then two Airflow nights, whose failing gates
stop them before any training:
- transactions with 30 % of their rows rejected: the raw gate quarantines the revision, and
  Redis, the score table and the champion stay exactly as they were;
- a snapshot suite that fails (an analyst's copy of the suites with a threshold set too tight,
  taken from MLPIPELINE_EXPECTATIONS_DIR): Redis stays exactly as it was and the source batches
  stay current.
Both run with a webhook alert destination: a local HTTP server receives the quarantine alert,
then the snapshot gate's failure alert.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from mlpipeline import online, quality
from mlpipeline.core import landing
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore, from_settings
from mlpipeline.devtools import local_airflow
from mlpipeline.devtools.generate import generate_range
from mlpipeline.pipeline import nightly
from mlpipeline.scoring import score_table
from mlpipeline.training import model_registry
from mlpipeline.warehouse import connect
from tests import airflow_probe
from tests.alert_sinks import HttpSink, http_sink
from tests.champion import register_champion
from tests.e2e_env import pipeline_env, private_redis
from tests.history import CUSTOMERS, NIGHT, START, copy_history

pytestmark = pytest.mark.e2e

CLEAN = NIGHT - timedelta(days=1)
BAD_RAW = NIGHT
BAD_SNAPSHOT = BAD_RAW + timedelta(days=1)
CHECK_RAW = "ingest_transactions.check_raw_transactions"


def _reject_30_percent(store: ObjectStore, day: date) -> None:
    """The producer's file for the day: 30 % of amounts written with a decimal comma."""
    prefix = landing.day_prefix("transactions", day)
    names = landing.list_data_files(store, "transactions", day)
    frame = pd.concat(
        [pd.read_csv(io.BytesIO(store.get_bytes(prefix + n)), dtype=str) for n in names],
        ignore_index=True,
    )
    frame.loc[frame.index % 10 < 3, "amount"] = frame["amount"].str.replace(".", ",")
    for name in names:
        store.delete(prefix + name)
    store.put_bytes(prefix + "part-00000.csv", frame.to_csv(index=False).encode())
    landing.write_success(
        store, "transactions", day, [landing.DeclaredFile("part-00000.csv", len(frame))]
    )


def _tight_suites(folder: Path) -> Path:
    """The suites as shipped, with one threshold tightened below what the data holds."""
    shutil.copytree(quality.suites_dir(), folder)
    suite = folder / "customer_snapshot.json"
    text = suite.read_text()
    loose = '"column": "amount_sum_30d", "min_value": 0}'
    assert loose in text
    suite.write_text(
        text.replace(loose, '"column": "amount_sum_30d", "min_value": 0, "max_value": 50}')
    )
    return folder


def _register_champion(settings: Settings) -> str:
    """A small scikit-learn pipeline registered as `champion`, as the nightly would find it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    with connect(settings, read_only=True) as con:
        frame = con.execute(
            "SELECT amount::DOUBLE AS amount, txn_count_24h, channel "
            "FROM features.transaction_features"
        ).df()
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "txn_count_24h"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=200))])
    pipeline.fit(frame, (frame["amount"] > frame["amount"].quantile(0.95)).astype(int))
    return register_champion(settings, pipeline, START)


def _publish(day: date) -> None:
    """Day D published by the nightly's stages, run in this process: the snapshot exported,
    staged, verified and switched in Redis, the day scored with the champion."""
    run_id = f"setup__{day}"
    export = nightly.export_snapshot(str(day))
    nightly.push_staged(export)
    verified = nightly.verify_staged(export)
    nightly.score(str(day), run_id)
    nightly.switch_online(export, verified)


def _dags_test(day: date, env: dict[str, str]) -> tuple[int, str]:
    """`airflow dags test` for day D, keeping what it printed: the task logs, in a test run."""
    return airflow_probe.dags_test("fraud_nightly", day, env)


def _observable(settings: Settings, redis_url: str) -> dict:
    """Everything a downstream reader sees: every Redis key with its value, the score table's
    version and the champion's version."""
    client = online.as_client(redis_url)
    keys = sorted(client.scan_iter(match="fs:*", count=1000))
    location = score_table.score_table_location(settings)
    from deltalake import DeltaTable

    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    return {
        "redis": {key: client.dump(key) for key in keys},
        "current": client.hgetall(online.CURRENT_KEY),
        "scores_version": DeltaTable(
            location.uri, storage_options=location.storage_options
        ).version(),
        "champion": champion.version if champion else None,
    }


@pytest.fixture(scope="module")
def alert_hook() -> Iterator[HttpSink]:
    """A webhook alert destination: a local HTTP server keeping what it receives."""
    with http_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def nights(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: str,
    alert_hook: HttpSink,
    e2e_history: Path,
) -> Iterator[dict]:
    data_dir = copy_history(e2e_history, tmp_path_factory.mktemp("quality-e2e"))
    redis_url = private_redis(redis_server, 8)
    with pipeline_env(data_dir, redis_url, unset=[quality.SUITES_ENV]) as settings:
        store = from_settings(settings)
        generate_range(store, BAD_RAW, BAD_SNAPSHOT, customers=CUSTOMERS)
        _reject_30_percent(store, BAD_RAW)
        env = local_airflow.airflow_env(settings)
        local_airflow.init(env)
        champion = _register_champion(settings)
        _publish(CLEAN)
        seen = {"before": _observable(settings, redis_url)}
        runs, output = {}, {}
        hooked = {**env, "MLPIPELINE_ALERT_WEBHOOK_URL": f"{alert_hook.url}/alerts"}
        runs["bad_raw"], output["bad_raw"] = _dags_test(BAD_RAW, hooked)
        alerts_received = alert_hook.json_bodies("/alerts")
        seen["after_bad_raw"] = _observable(settings, redis_url)
        tight = {**env, quality.SUITES_ENV: str(_tight_suites(data_dir / "suites"))}
        tight["MLPIPELINE_ALERT_WEBHOOK_URL"] = f"{alert_hook.url}/snapshot-alerts"
        runs["bad_snapshot"], _ = _dags_test(BAD_SNAPSHOT, tight)
        seen["after_bad_snapshot"] = _observable(settings, redis_url)
        states = {
            name: local_airflow.task_states("fraud_nightly", day, env)
            for name, day in (("bad_raw", BAD_RAW), ("bad_snapshot", BAD_SNAPSHOT))
        }
        yield {
            "settings": settings,
            "store": store,
            "champion": champion,
            "exit": runs,
            "output": output,
            "seen": seen,
            "states": states,
            "alerts": alerts_received,
            "snapshot_alerts": alert_hook.json_bodies("/snapshot-alerts"),
        }


def test_the_clean_day_was_published_before_the_bad_nights(nights):
    before = nights["seen"]["before"]
    assert before["current"][b"cutoff"].decode() == str(CLEAN)
    assert before["scores_version"] is not None and before["champion"] == nights["champion"]


def test_a_failing_raw_revision_is_quarantined_and_nothing_downstream_changes(nights):
    states = nights["states"]["bad_raw"]
    assert nights["exit"]["bad_raw"] != 0
    assert states[CHECK_RAW] == "failed"
    assert states["ingest_transactions.promote_transactions"] == "upstream_failed"
    assert states["check_snapshot"] in {"upstream_failed", "skipped"}
    assert states["score"] in {"upstream_failed", "skipped"}
    # Redis (every key and the current pointer), the score table and the champion: unchanged.
    assert nights["seen"]["after_bad_raw"] == nights["seen"]["before"]

    batch_id = f"transactions-{BAD_RAW}"
    with connect(nights["settings"], read_only=True) as con:
        history = con.execute(
            "SELECT revision, list(status ORDER BY recorded_at) FROM meta.batch_events "
            "WHERE batch_id = ? GROUP BY revision",
            [batch_id],
        ).fetchall()
        visible = con.execute(
            "SELECT count(*) FROM raw.transactions_current WHERE dt = ?", [BAD_RAW]
        ).fetchone()[0]
        checks = con.execute(
            "SELECT expectation, observed FROM meta.validation_results "
            "WHERE subject = ? AND NOT success",
            [f"{batch_id}@{history[0][0]}"],
        ).fetchall()
    assert [statuses for _, statuses in history] == [["ingested", "quarantined"]]
    assert visible == 0
    assert [e for e, _ in checks] == [
        "expect_table_row_count_to_be_between: reject rate within quality.raw.max_reject_rate"
    ]


def test_the_failing_raw_check_names_its_data_docs_page(nights):
    store, settings = nights["store"], nights["settings"]
    pages = [
        k
        for k in store.list("reports/data_docs/validations/raw_transactions/")
        if f"transactions-{BAD_RAW}@" in k
    ]
    assert len(pages) == 1 and store.exists("reports/data_docs/index.html")
    local = settings.data_dir / "data_docs" / pages[0].removeprefix("reports/data_docs/")
    assert local.exists()
    assert f"Data Docs: object store {pages[0]}" in nights["output"]["bad_raw"]


def test_a_failing_snapshot_suite_leaves_redis_as_it_was(nights):
    states = nights["states"]["bad_snapshot"]
    assert nights["exit"]["bad_snapshot"] != 0
    assert states[CHECK_RAW] == "success"
    assert states["check_snapshot"] == "failed"
    assert states["online.push_staged"] in {"upstream_failed", "skipped"}
    assert states["switch_online"] in {"upstream_failed", "skipped"}
    before, after = nights["seen"]["after_bad_raw"], nights["seen"]["after_bad_snapshot"]
    assert after["redis"] == before["redis"] and after["current"] == before["current"]
    with connect(nights["settings"], read_only=True) as con:
        statuses = con.execute(
            "SELECT DISTINCT status FROM meta.batches WHERE dt = ?", [BAD_SNAPSHOT]
        ).fetchall()
        failed = con.execute(
            "SELECT expectation FROM meta.validation_results "
            "WHERE subject = ? AND suite = 'customer_snapshot' AND NOT success",
            [f"cutoff={BAD_SNAPSHOT}"],
        ).fetchall()
    assert statuses == [("current",)], "a snapshot failure does not quarantine source batches"
    assert failed == [("expect_column_values_to_be_between",)]


def test_the_quarantine_sent_one_alert_naming_batch_file_and_rule(nights):
    batch_id = f"transactions-{BAD_RAW}"
    failed = {t for t, s in nights["states"]["bad_raw"].items() if s == "failed"} - {"watcher"}
    received = nights["alerts"]
    # One alert per failed task (the watcher's own failure does not alert again).
    assert sorted(a["task_id"] for a in received) == sorted(failed)
    [alert] = [a for a in received if a["task_id"] == CHECK_RAW]
    assert alert["kind"] == "quarantined" and alert["dag_id"] == "fraud_nightly"
    assert alert["batch_id"] == batch_id and alert["day"] == str(BAD_RAW)
    assert alert["rules"] == [
        "expect_table_row_count_to_be_between: reject rate within quality.raw.max_reject_rate"
    ]
    assert alert["files"] == [landing.day_prefix("transactions", BAD_RAW) + "part-00000.csv"]
    assert f"/runs/{quote(alert['run_id'])}/tasks/{CHECK_RAW}" in alert["log_url"]
    assert "quarantined" in alert["text"] and batch_id in alert["text"]
    assert f"mlpipeline batches release {batch_id} --revision {alert['revision']}" in alert["text"]


def test_a_failed_gate_sends_one_plain_failure_alert(nights):
    [alert] = nights["snapshot_alerts"]
    assert alert["kind"] == "task_failed" and alert["task_id"] == "check_snapshot"
    assert alert["day"] == str(BAD_SNAPSHOT) and "batch_id" not in alert
    assert alert["error"].startswith("QualityGateFailed: suite 'customer_snapshot'")
    assert "Task fraud_nightly.check_snapshot failed" in alert["text"]
