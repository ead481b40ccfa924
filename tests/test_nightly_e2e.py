"""End to end: `fraud_nightly` runs with `airflow dags test` on one shared multi-day history.

Three nights on the same warehouse, object store, MLflow store and Redis, on a copy of the
session's history (tests/history.py):
- cold start: the night of the history's sixth day, run again, has five days of history before
  its cutoff (every stage reads as of the cutoff) and no model yet: training is skipped, the day
  records "no model yet", Redis still switches to the new snapshot;
- a normal night: a champion is registered and every transaction of the day is scored;
- a night whose training fails: scoring (with the existing champion) and the Redis switch
  still happen, and the run ends failed.
Each scored night is monitored after scoring (the cold night: nothing to compare).
The nights' asset events are read back from Airflow's metadata, and the example consumer DAG
reads the normal night's scores.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlpipeline import online
from mlpipeline.core.config import CONF_DIR, Settings, pipeline_conf
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools import local_airflow
from mlpipeline.devtools.generate import generate_range
from mlpipeline.features.export import latest_export
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.scoring import scores_consumer
from mlpipeline.scoring.score_table import read_scores
from mlpipeline.training import model_registry
from mlpipeline.training.split import split_dataset
from mlpipeline.training.split_store import read_training_set
from mlpipeline.warehouse import connect
from tests import airflow_probe
from tests.e2e_env import pipeline_env, private_redis
from tests.history import CUSTOMERS, NIGHT, START, copy_history

pytestmark = pytest.mark.e2e

COLD_DAY = START + timedelta(days=5)
FAILING_NIGHT = NIGHT + timedelta(days=1)


def _broken_candidates(path: Path) -> Path:
    """The configured candidates, one of them with a hyperparameter scikit-learn refuses."""
    conf = yaml.safe_load((CONF_DIR / "candidates.yaml").read_text())
    conf["candidates"][-1]["params"]["learning_rate"] = -1.0
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture(scope="module")
def nights(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, e2e_history: Path
) -> Iterator[dict]:
    data_dir = copy_history(e2e_history, tmp_path_factory.mktemp("e2e"))
    redis_url = private_redis(redis_server, 7)
    with pipeline_env(data_dir, redis_url) as settings:
        generate_range(from_settings(settings), NIGHT, FAILING_NIGHT, customers=CUSTOMERS)
        env = local_airflow.airflow_env(settings)
        local_airflow.init(env)
        runs = {}
        runs["cold"] = local_airflow.dags_test("fraud_nightly", COLD_DAY, env)
        runs["night"] = local_airflow.dags_test("fraud_nightly", NIGHT, env)
        champion_after_night = model_registry.resolve_champion(settings.mlflow_tracking_uri)
        broken = _broken_candidates(data_dir / "broken_candidates.yaml")
        runs["failing"] = local_airflow.dags_test(
            "fraud_nightly", FAILING_NIGHT, {**env, "MLPIPELINE_CANDIDATES": str(broken)}
        )
        states = {
            name: local_airflow.task_states("fraud_nightly", day, env)
            for name, day in (("cold", COLD_DAY), ("night", NIGHT), ("failing", FAILING_NIGHT))
        }
        yield {
            "settings": settings,
            "redis_url": redis_url,
            "exit": runs,
            "states": states,
            "champion_after_night": champion_after_night,
        }


def _day_counts(settings: Settings, day: date) -> dict:
    with connect(settings, read_only=True) as con:
        transactions = con.execute(
            "SELECT count(*) FROM features.transaction_features WHERE dt = ?", [day]
        ).fetchall()[0][0]
        row = con.execute(
            "SELECT no_model_yet, rows_to_score, rows_scored, model_version, published "
            "FROM meta.days WHERE day = ?",
            [day],
        ).fetchall()
    keys = ["no_model_yet", "rows_to_score", "rows_scored", "model_version", "published"]
    return {"transactions": transactions, **dict(zip(keys, row[0], strict=True))}


def test_cold_start_skips_training_and_records_no_model_yet(nights):
    states = nights["states"]["cold"]
    assert nights["exit"]["cold"] == 0
    assert states["training.check_training_set"] == "skipped"
    assert states["score"] == "success" and states["switch_online"] == "success"
    # Skips are not failures: the watcher (trigger rule ONE_FAILED) is skipped, not run.
    assert states["watcher"] == "skipped"
    assert "failed" not in states.values() and "upstream_failed" not in states.values()
    counts = _day_counts(nights["settings"], COLD_DAY)
    assert counts["no_model_yet"] is True and counts["rows_scored"] is None
    assert counts["rows_to_score"] == counts["transactions"] > 0


def test_raw_rows_carry_batch_id_and_revision(nights):
    with connect(nights["settings"], read_only=True) as con:
        rows = con.execute(
            "SELECT r.batch_id, r.revision, count(*), any_value(b.status) "
            "FROM raw.transactions r JOIN meta.batches b USING (batch_id, revision) "
            "WHERE r.dt = ? GROUP BY ALL",
            [NIGHT],
        ).fetchall()
        events = con.execute(
            "SELECT list(status ORDER BY recorded_at) FROM meta.batch_events WHERE batch_id = ?",
            [f"transactions-{NIGHT}"],
        ).fetchall()[0][0]
    assert len(rows) == 1
    batch_id, revision, count, status = rows[0]
    assert batch_id == f"transactions-{NIGHT}" and len(revision) == 12
    assert count > 0 and status == "current"
    assert events == ["ingested", "validated", "current"]


def test_snapshot_holds_every_active_customer_as_of_the_cutoff(nights):
    with connect(nights["settings"], read_only=True) as con:
        snapshot = con.execute(
            "SELECT count(*), count(DISTINCT customer_id), max(last_txn_ts) "
            "FROM features.customer_snapshot WHERE cutoff_date = ?",
            [NIGHT],
        ).fetchall()[0]
        active = con.execute(
            "SELECT count(DISTINCT customer_id) FROM raw.transactions_current "
            "WHERE event_ts >= ? AND event_ts < ?",
            [
                datetime.combine(NIGHT - timedelta(days=34), datetime.min.time()),
                datetime.combine(NIGHT + timedelta(days=1), datetime.min.time()),
            ],
        ).fetchall()[0][0]
    rows, distinct, newest = snapshot
    assert rows == distinct == active > 0
    assert newest < datetime.combine(NIGHT + timedelta(days=1), datetime.min.time())


def test_champion_is_registered_with_a_useful_validation_auc(nights):
    settings = nights["settings"]
    champion = nights["champion_after_night"]
    assert nights["exit"]["night"] == 0
    not_success = {t: s for t, s in nights["states"]["night"].items() if s != "success"}
    assert not_success == {"watcher": "skipped"}, nights["states"]["night"]
    assert champion is not None and champion.name == "fraud_detector"
    run = model_registry.client(settings.mlflow_tracking_uri).get_run(champion.run_id)
    assert run.data.metrics["val_roc_auc"] >= 0.75
    assert champion.training_cutoff == NIGHT
    assert 0.0 < champion.decision_threshold < 1.0
    plots = model_registry.client(settings.mlflow_tracking_uri).list_artifacts(
        champion.run_id, "evaluation"
    )
    assert {Path(p.path).name for p in plots} >= {"roc_pr_curves.png", "confusion_matrix.png"}


def test_the_champions_training_set_reads_back_as_it_was_from_its_warehouse_snapshot(nights):
    """The version records the DuckLake snapshot its rows were read from: read there again and
    split the same way, they make the very split it was trained on (a split id is a content
    hash), after later nights changed the warehouse."""
    settings = nights["settings"]
    champion = nights["champion_after_night"]
    version = model_registry.client(settings.mlflow_tracking_uri).get_model_version(
        champion.name, champion.version
    )
    snapshot = int(version.tags[model_registry.SNAPSHOT_TAG])
    with connect(settings, read_only=True) as con:
        frame = read_training_set(con, NIGHT, snapshot=snapshot)
        latest = con.execute("SELECT id FROM lake.current_snapshot()").fetchall()[0][0]
    conf = pipeline_conf()["split"]
    again = split_dataset(frame, strategy=conf["strategy"], ratios=tuple(conf["ratios"]))
    assert latest > snapshot
    assert again.split_id == version.tags["split_id"]


def test_every_transaction_of_the_night_is_scored_once(nights):
    settings = nights["settings"]
    counts = _day_counts(settings, NIGHT)
    assert counts["no_model_yet"] is False and counts["published"] is True
    assert counts["rows_scored"] == counts["rows_to_score"] == counts["transactions"] > 0
    scores = read_scores(settings, NIGHT)
    with connect(settings, read_only=True) as con:
        ids = {
            r[0]
            for r in con.execute(
                "SELECT transaction_id FROM features.transaction_features WHERE dt = ?", [NIGHT]
            ).fetchall()
        }
    assert len(scores) == len(ids) and set(scores["transaction_id"]) == ids
    assert scores["model_version"].nunique() == 1
    assert scores["model_version"].iloc[0] == nights["champion_after_night"].version
    assert scores["score"].between(0, 1).all()


def _exported_rows(settings: Settings, day: date) -> tuple[dict, pd.DataFrame]:
    store = from_settings(settings)
    manifest = latest_export(store, day)
    frames = [
        pq.read_table(io.BytesIO(store.get_bytes(manifest["prefix"] + f["name"]))).to_pandas()
        for f in manifest["files"]
    ]
    return manifest, pd.concat(frames, ignore_index=True)


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and pd.isna(a)) or a is pd.NaT:
        return b is None
    if isinstance(a, pd.Timestamp | datetime):
        return pd.Timestamp(a) == pd.Timestamp(b)
    return a == b


def test_redis_serves_one_vector_per_entity_equal_to_the_export(nights):
    settings = nights["settings"]
    manifest, exported = _exported_rows(settings, FAILING_NIGHT)
    current = online.current_snapshot(nights["redis_url"])
    assert current["export_id"] == manifest["export_id"] and current["cutoff"] == str(FAILING_NIGHT)
    assert current["entities"] == len(exported) == manifest["row_count"]
    reader = online.OnlineReader(nights["redis_url"])
    vectors = reader.get_many(exported[manifest["entity_key"]].tolist())
    columns = [c["name"] for c in manifest["columns"]]
    mismatches = [
        (entity, column)
        for entity, vector, (_, row) in zip(
            exported[manifest["entity_key"]], vectors, exported.iterrows(), strict=True
        )
        for column in columns
        if not _same(row[column], vector[column])
    ]
    assert mismatches == []
    assert reader.get("no-such-customer") == manifest["defaults"]


def test_failed_training_still_scores_and_switches_but_fails_the_run(nights):
    states = nights["states"]["failing"]
    assert nights["exit"]["failing"] != 0
    assert "failed" in {s for t, s in states.items() if t.startswith("training.train")}
    assert states["score"] == "success"
    assert states["switch_online"] == "success"
    assert states["watcher"] == "failed"
    counts = _day_counts(nights["settings"], FAILING_NIGHT)
    assert counts["rows_scored"] == counts["transactions"] > 0
    assert counts["model_version"] == nights["champion_after_night"].version


def _events(nights: dict, asset: str, day: date) -> list[dict]:
    env = local_airflow.airflow_env(nights["settings"])
    return [
        e
        for e in airflow_probe.asset_events(env)
        if e["asset"] == asset and e["extra"].get("day") == str(day)
    ]


def test_the_night_published_asset_events_saying_what_and_for_which_day(nights):
    settings = nights["settings"]
    counts = _day_counts(settings, NIGHT)
    [scores] = _events(nights, "fraud.scores", NIGHT)
    [snapshot] = _events(nights, "fraud.snapshot_export", NIGHT)
    [switch] = _events(nights, "fraud.online_snapshot", NIGHT)
    assert {e["dag_id"] for e in (scores, snapshot, switch)} == {"fraud_nightly"}
    assert (scores["task_id"], snapshot["task_id"]) == ("score", "online.export_snapshot")
    assert scores["extra"]["rows_scored"] == counts["rows_scored"] > 0
    assert scores["extra"]["model_version"] == nights["champion_after_night"].version
    assert isinstance(scores["extra"]["table_version"], int)
    manifest, _ = _exported_rows(settings, NIGHT)
    assert snapshot["extra"]["export_id"] == manifest["export_id"]
    assert snapshot["extra"]["row_count"] == manifest["row_count"]
    assert switch["extra"]["snapshot_id"] == manifest["export_id"]
    for dataset in ("transactions", "chargebacks"):
        [batch] = _events(nights, f"fraud.raw.{dataset}", NIGHT)
        assert batch["extra"]["batch_id"] == f"{dataset}-{NIGHT}"
    [cold] = _events(nights, "fraud.scores", COLD_DAY)
    assert cold["extra"]["no_model_yet"] is True and cold["extra"]["table_version"] is None


def test_the_night_is_monitored_after_scoring_and_published(nights):
    """The night's inputs and scores against the champion that scored them: metrics in the Delta
    table and the warehouse, a `fraud.monitoring` event; the cold night has nothing to compare."""
    settings, version = nights["settings"], nights["champion_after_night"].version
    assert nights["states"]["night"]["monitor"] == "success"
    rows = read_metrics(settings, NIGHT)
    assert len(rows) > 2 and set(rows["scored_day"]) == {NIGHT}
    assert set(rows["model_version"]) == {version}
    checks = {"input_drift", "prediction_drift", "realized_performance", "serving_skew"}
    assert set(rows["check"]) == {*checks, "freshness"}
    # A run the test triggers is not the scheduled one: freshness is measured, not graded.
    assert set(rows.loc[rows["check"] == "freshness", "status"]) <= {"ok", "no_reference"}
    # The champion scored only this night: no day is old enough for labels; no /score request.
    assert set(rows.loc[rows["check"] == "realized_performance", "status"]) == {"pending"}
    assert set(rows.loc[rows["check"] == "serving_skew", "status"]) == {"no_reference"}
    with connect(settings, read_only=True) as con:
        [(copied,)] = con.execute(
            "SELECT count(*) FROM monitoring.metrics WHERE run_day = ?", [NIGHT]
        ).fetchall()
    assert copied == len(rows)
    [event] = _events(nights, "fraud.monitoring", NIGHT)
    assert event["task_id"] == "monitor" and event["extra"]["model_version"] == version
    assert event["extra"]["status"] in {"ok", "warning", "failed"}
    assert nights["states"]["cold"]["monitor"] == "success"
    cold = read_metrics(settings, COLD_DAY)
    assert set(cold.loc[cold["check"] != "freshness", "status"]) == {"no_reference"}


def test_a_champion_event_only_on_the_night_the_champion_changed(nights):
    env = local_airflow.airflow_env(nights["settings"])
    champions = [e for e in airflow_probe.asset_events(env) if e["asset"] == "fraud.champion"]
    assert [e["extra"]["day"] for e in champions] == [str(NIGHT)]
    assert champions[0]["extra"]["model_version"] == nights["champion_after_night"].version
    assert champions[0]["task_id"] == "training.evaluate_register"


def test_the_example_consumer_reads_the_scores_an_event_names(nights):
    settings = nights["settings"]
    [event] = _events(nights, "fraud.scores", NIGHT)
    summary = scores_consumer.summarize(settings, event["extra"])
    with connect(settings, read_only=True) as con:
        rows, flagged, top = con.execute(
            "SELECT count(*), count(*) FILTER (decision), max(score) "
            "FROM scores.transaction_scores WHERE dt = ?",
            [NIGHT],
        ).fetchall()[0]
    assert (summary["rows"], summary["flagged"]) == (rows, flagged)
    assert summary["max_score"] == pytest.approx(top)
    assert summary["table_version"] == event["extra"]["table_version"]
    # The DAG itself, run by hand for the night: no event, so it reads the current table.
    env = local_airflow.airflow_env(settings)
    code, output = airflow_probe.dags_test("example_scores_consumer", NIGHT, env)
    assert code == 0, output[-3000:]
    assert scores_consumer.describe({**summary, "table_version": None}) in output
