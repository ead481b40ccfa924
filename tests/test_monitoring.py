"""Monitoring a scored day: input drift against the training rows of the version that scored it,
prediction drift against its validation scores, the metrics table and `mlpipeline monitor show`.

One real history: the demo producer's days (`mlpipeline.devtools.generate`) ingested with the
ingestion library and built by one real `dbt build`; a logistic regression trained, evaluated and
promoted the nightly's way, then every monitored day scored by `score.score_day`. The drifted day
is landed like the others, then its transactions file is edited before ingestion, as a changed
upstream would deliver it: the amounts of online transactions tripled, and a share of the
transactions in a country the generator never uses (JP).
"""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlpipeline import warehouse
from mlpipeline.cli import main
from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.days import day_range
from mlpipeline.core.landing import day_prefix
from mlpipeline.core.objectstore import LocalStore, S3Store
from mlpipeline.devtools.generate import generate_range
from mlpipeline.features import transform
from mlpipeline.ingest import batches, revisions
from mlpipeline.monitoring import report
from mlpipeline.monitoring.conf import MonitoringActions, MonitoringConf, RealizedConf
from mlpipeline.monitoring.drift_tests import column_drift, normed_wasserstein
from mlpipeline.monitoring.metrics_table import METRICS_TABLE_KEY, read_metrics
from mlpipeline.monitoring.monitor import monitor_day
from mlpipeline.monitoring.realized import COMPARED, choose_days, pooled_scores, realized_rows
from mlpipeline.monitoring.reference import coverage_test_metrics, load_reference
from mlpipeline.monitoring.summary import MonitoringSummary
from mlpipeline.ops.alerts import monitoring_alert
from mlpipeline.pipeline import nightly
from mlpipeline.pipeline.nightly.monitoring import MonitoringFailed, checked
from mlpipeline.scoring import score
from mlpipeline.scoring.score_table import delta_location, open_score_table, read_scores
from mlpipeline.training import model_registry
from mlpipeline.training.evaluate import EvaluationRules, evaluate_candidate, validation_scores
from mlpipeline.training.split_store import load_split
from mlpipeline.training.train import CandidateResult
from mlpipeline.warehouse.meta import ensure_meta
from tests.e2e_env import OVERRIDES

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
# The 30-day feature windows are full for transactions from day 32 on (their snapshot is of the
# day before, or the one before that until the publication lag has passed). The model trains on
# the matured rows after that: the TRAINING_WINDOW_DAYS before the label horizon (21 days before
# LAST's cutoff), days 33 to 49 of the world.
LAST = START + timedelta(days=69)
TRAINING_WINDOW_DAYS = 17
CLEAN_DAYS = day_range(LAST - timedelta(days=5), LAST - timedelta(days=1))
DRIFT_DAY = LAST
# About 2,300 transactions a day: at 1,150 a day, sampling noise alone took a few 30-day features
# to Evidently's 0.1 distance on clean days (0.103 at most); at 300 customers, `amount` at 0.14.
CUSTOMERS = 2000

# Every input of the logistic regression (pipeline.yaml's candidate): transaction fields, online
# features, the raw columns its request-time features read (not the timestamps), and those.
ONLINE = {
    "txn_count_24h",
    "txn_count_7d",
    "txn_count_30d",
    "amount_sum_24h",
    "amount_sum_7d",
    "amount_sum_30d",
    "amount_mean_30d",
    "amount_max_30d",
    "distinct_merchants_30d",
    "distinct_categories_30d",
    "distinct_countries_30d",
    "online_share_30d",
    "chargebacks_30d",
    "usual_country",
}
REQUEST = {
    "amount_to_mean_30d",
    "seconds_since_last_txn",
    "hour_of_day",
    "is_night",
    "is_foreign_country",
    "is_online",
}
MODEL_INPUTS = {"amount", "merchant_category", "channel", "country", *ONLINE, *REQUEST}
# Planted: online amounts and a new country; derived from them: the request-time features.
PLANTED = {"amount", "country", "amount_to_mean_30d", "is_foreign_country"}

# A `failed` day fails the run (pipeline.yaml ships fail_run: never while every generated day is
# `failed` against the warm-up train rows: see its comment).
FAIL_ON_FAILED = MonitoringActions(alert="warning", fail_run="failed")
SHIPPED = MonitoringActions(alert="warning", fail_run="never")


@dataclass(frozen=True)
class World:
    settings: Settings
    version: str


def _plant_drift(store: LocalStore, day: date) -> None:
    """Online amounts tripled, a fifth of the other transactions in JP; same rows, same files."""
    prefix = day_prefix("transactions", day)
    for key in store.list(prefix):
        if not key.endswith(".csv"):
            continue
        frame = pd.read_csv(io.BytesIO(store.get_bytes(key)), dtype=str, keep_default_na=False)
        online = frame["channel"] == "online"
        frame.loc[online, "amount"] = (
            (frame.loc[online, "amount"].astype(float) * 3).round(2).astype(str)
        )
        moved = (~online) & (frame.index % 5 == 0)
        frame.loc[moved, "country"] = "JP"
        store.put_bytes(key, frame.to_csv(index=False).encode())


def _ingest(settings: Settings, days: list[date]) -> None:
    """prepare → load → promote per dataset-day (the raw GX gate never changes rows: left out)."""
    store = LocalStore(settings.local_store_root)
    with warehouse.connect(settings) as con:
        ensure_meta(con)
        for day in days:
            for dataset in nightly.DATASETS:
                prepared = revisions.prepare_revision(store, dataset, day)
                assert revisions.load_revision(con, store, prepared, "monitor") == "ingested"
                batches.set_status(
                    con, prepared.batch_id, prepared.revision, "validated", run_id="monitor"
                )
                batches.promote(con, prepared.batch_id, prepared.revision, run_id="monitor")


def _promote(
    settings: Settings, result: CandidateResult, split_id: str
) -> model_registry.ChampionRef:
    """Evaluate the version (threshold, validation scores) and make it champion."""
    store = LocalStore(settings.local_store_root)
    evaluate_candidate(
        result,
        load_split(store, split_id),
        rules=EvaluationRules.from_conf(),
        tracking_uri=settings.mlflow_tracking_uri,
    )
    client = model_registry.client(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(model_registry.MODEL_NAME, "champion", result.model_version)
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    assert champion is not None
    return champion


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("monitoring") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
        for var in OVERRIDES:
            env.delenv(var, raising=False)
        settings = Settings.from_env()
        store = LocalStore(settings.local_store_root)
        generate_range(store, START, LAST, customers=CUSTOMERS)
        _plant_drift(store, DRIFT_DAY)
        warehouse.create(settings)
        _ingest(settings, day_range(START, LAST))
        transform.build(
            LAST,
            settings=settings,
            full_refresh=True,
            variables={"training_window_days": TRAINING_WINDOW_DAYS},
        )
        split_info = nightly.split(LAST.isoformat(), {})
        job = next(
            j for j in nightly.candidates(split_info) if j["candidate"] == "logistic_regression"
        )
        result = CandidateResult.from_dict(nightly.train(job))
        champion = _promote(settings, result, split_info["split_id"])
        for day in [*CLEAN_DAYS, DRIFT_DAY]:
            score.score_day(
                day,
                settings=settings,
                champion=champion,
                load_model=model_registry.load_model,
                run_id=f"monitor-{day}",
            )
        yield World(settings, champion.version)


@dataclass(frozen=True)
class Monitored:
    clean: dict[date, MonitoringSummary]
    drift: MonitoringSummary


@pytest.fixture(scope="module")
def monitored(world: World) -> Monitored:
    clean = {day: monitor_day(world.settings, day) for day in CLEAN_DAYS}
    return Monitored(clean, monitor_day(world.settings, DRIFT_DAY))


@pytest.fixture()
def fail_on_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """pipeline.yaml's monitoring with a `failed` day failing the run."""
    conf = replace(MonitoringConf.load(), actions=FAIL_ON_FAILED)
    monkeypatch.setattr(MonitoringConf, "load", classmethod(lambda cls: conf))


def _features(summary: MonitoringSummary) -> pd.DataFrame:
    rows = summary.rows
    return rows[(rows["check"] == "input_drift") & (rows["feature_or_metric"] != "drift_share")]


def test_every_model_input_is_compared_with_its_test(monitored: Monitored) -> None:
    features = _features(monitored.drift).set_index("feature_or_metric")
    assert set(features.index) == MODEL_INPUTS
    # The reference (the train rows) has more than 1,000 rows: Evidently's distances.
    assert features.loc["amount", "method"] == "wasserstein"
    assert features.loc["country", "method"] == "jensenshannon"
    assert features.loc["is_online", "method"] == "jensenshannon"
    # pipeline.yaml's per-feature thresholds let the 24-hour windows follow the weekly cycle.
    weekly = {"txn_count_24h", "amount_sum_24h"}
    assert features["threshold"].to_dict() == {
        f: 0.25 if f in weekly else 0.1 for f in features.index
    }
    assert (features["drifted"] == (features["value"] >= 0.1)).all()
    assert (features["status"] == features["drifted"].map({True: "warning", False: "ok"})).all()
    assert (features["model_version"] == monitored.drift.model_version).all()


def test_clean_days_flag_no_feature(monitored: Monitored) -> None:
    assert len(monitored.clean) >= 5
    for day, summary in monitored.clean.items():
        assert summary.drifted_features == (), day
        assert summary.drift_share == 0, day


def test_planted_drift_flags_the_planted_and_derived_features(monitored: Monitored) -> None:
    drifted = set(monitored.drift.drifted_features)
    assert drifted == PLANTED
    share = len(drifted) / len(MODEL_INPUTS)
    assert monitored.drift.drift_share == pytest.approx(share)
    assert monitored.drift.status == "failed"


def test_prediction_drift_against_the_validation_scores(world: World, monitored: Monitored) -> None:
    client = model_registry.client(world.settings.mlflow_tracking_uri)
    run_id = client.get_model_version(model_registry.MODEL_NAME, world.version).run_id
    kept = validation_scores(world.settings.mlflow_tracking_uri, run_id)
    store = LocalStore(world.settings.local_store_root)
    split_id = client.get_model_version(model_registry.MODEL_NAME, world.version).tags["split_id"]
    assert kept is not None and len(kept) == len(load_split(store, split_id).validation)
    rows = monitored.drift.rows.set_index("feature_or_metric")
    scores = read_scores(world.settings, DRIFT_DAY)
    assert rows.loc["score", "value"] == pytest.approx(
        normed_wasserstein(kept, scores["score"].to_numpy())
    )
    assert rows.loc["score", "rows_reference"] == len(kept)
    threshold = model_registry.resolve_champion(world.settings.mlflow_tracking_uri)
    assert threshold is not None
    expected = (kept >= threshold.decision_threshold).mean()
    assert rows.loc["decision_rate", "value"] == pytest.approx(
        abs(scores["decision"].mean() / expected - 1)
    )


def test_realized_performance_waits_for_labels(monitored: Monitored) -> None:
    """The version scored its first day five days ago: no day is old enough to pool (7 days),
    so realized performance is pending, which leaves the day's status to the drift checks."""
    rows = monitored.drift.rows
    realized = rows[rows["check"] == "realized_performance"].set_index("feature_or_metric")
    assert set(realized.index) == {"frauds", "label_coverage"}
    assert set(realized["status"]) == {"pending"}
    assert realized.loc["frauds", "value"] == 0
    assert monitored.drift.status == "failed"
    assert "realized performance" in monitored.drift.text()


def test_a_young_pool_is_read_by_day_and_graded_against_the_test_rows_at_its_age(
    world: World,
) -> None:
    """Pooling from two days old: the scan reads the pool the old full read chose, and its
    reference is the test rows labelled with the chargebacks reported as soon."""
    conf = RealizedConf(min_frauds=5, min_label_age_days=2, lookback_days=120)
    pool = pooled_scores(world.settings, world.version, LAST, 21, conf)
    scores = open_score_table(world.settings).to_pandas(
        columns=["dt", "transaction_id", "score", "decision"],
        filters=[("model_version", "=", world.version)],
    )
    with warehouse.connect(world.settings, read_only=True) as con:
        known = con.execute(
            "SELECT transaction_id FROM raw.chargebacks_current WHERE reported_at < ?",
            [LAST + timedelta(days=1)],
        ).df()["transaction_id"]
    scores["is_fraud"] = scores["transaction_id"].isin(known).astype(int)
    scores["dt"] = pd.to_datetime(scores["dt"]).dt.date
    days = choose_days(scores.groupby("dt")["is_fraud"].sum(), LAST, 21, conf)
    assert pool.days == days and pool.label_age_days == 2 and not pool.matured
    assert len(pool.rows) == scores["dt"].isin(days).sum()
    assert pool.frauds == scores.loc[scores["dt"].isin(days), "is_fraud"].sum() >= 5

    reference = load_reference(world.settings, world.version)
    every_label = coverage_test_metrics(world.settings, reference, 10_000)
    assert every_label == pytest.approx(
        {name: reference.test_metrics[name] for name in COMPARED.values()}
    )
    at_age = coverage_test_metrics(world.settings, reference, pool.label_age_days)
    assert at_age is not None and at_age["test_pr_auc"] != pytest.approx(every_label["test_pr_auc"])
    levels = MonitoringConf.load().checks["realized_performance"]
    rows = {r["feature_or_metric"]: r for r in realized_rows(pool, at_age, {}, levels, conf)}
    for metric, test_name in COMPARED.items():
        assert rows[metric]["status"] in {"ok", "warning", "failed"}
        assert rows[metric]["threshold"] == pytest.approx(at_age[test_name])


def test_the_report_page_shows_the_day_and_its_trends(
    world: World, monitored: Monitored, tmp_path: Path
) -> None:
    found = report.load_report(world.settings, DRIFT_DAY)
    assert found is not None and found.summary.status == "failed"
    trends = {trend.title.split(":")[0]: trend for trend in found.trends}
    share = trends["Input drift"]
    assert [day for day, _, _ in share.points] == [*CLEAN_DAYS, DRIFT_DAY]
    assert share.points[-1][1] == pytest.approx(monitored.drift.drift_share)
    assert share.levels == {"warning": 0.1, "failure": 0.3}
    assert report.load_report(world.settings, DRIFT_DAY + timedelta(days=1)) is None
    main(["monitor", "report", DRIFT_DAY.isoformat(), "--out", str(tmp_path / "page.html")])
    page = (tmp_path / "page.html").read_text()
    # No value yet: the realized AUCs (no label), serving skew (no request logged).
    assert page.count("<svg") == len(found.trends) - 4
    assert "<script" not in page and "http" not in page, "the page opens offline"
    assert ">nan<" not in page and " nan " not in page, "a missing cell reads '-'"
    assert f"Monitoring of {DRIFT_DAY}" in page and "amount_to_mean_30d" in page


def test_rerun_replaces_its_run_day_only(world: World, monitored: Monitored) -> None:
    before = read_metrics(world.settings)
    again = monitor_day(world.settings, DRIFT_DAY)
    after = read_metrics(world.settings)
    assert len(after) == len(before)
    mine = after[after["run_day"] == DRIFT_DAY]
    assert len(mine) == len(again.rows) and mine["computed_at"].nunique() == 1
    assert (
        mine["computed_at"] > before.loc[before["run_day"] == DRIFT_DAY, "computed_at"].max()
    ).all()
    key = ["run_day", "check", "feature_or_metric"]
    others = before[before["run_day"] != DRIFT_DAY].sort_values(key).reset_index(drop=True)
    kept = after[after["run_day"] != DRIFT_DAY].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(others, kept)
    with warehouse.connect(world.settings, read_only=True) as con:
        counts = dict(
            con.execute("SELECT run_day, count(*) FROM monitoring.metrics GROUP BY ALL").fetchall()
        )
    assert counts == after.groupby("run_day").size().to_dict()


def test_large_days_are_sampled_to_the_bound(world: World) -> None:
    conf = replace(MonitoringConf.load(), sample_rows=200)
    summary = monitor_day(
        world.settings, DRIFT_DAY, run_day=DRIFT_DAY + timedelta(days=1), conf=conf
    )
    features = _features(summary)
    assert (features["rows_current"] == 200).all() and (features["rows_reference"] == 200).all()


def test_no_reference_without_a_model(settings: Settings) -> None:
    summary = monitor_day(settings, DRIFT_DAY)
    assert summary.status == "no_reference" and summary.model_version is None
    measured = summary.rows[summary.rows["check"] != "freshness"]  # needs no model
    assert set(measured["status"]) == {"no_reference"}
    assert "no scores" in summary.rows["reference"].iloc[0]
    assert len(read_metrics(settings, DRIFT_DAY)) == len(summary.rows)


def test_monitor_run_and_show_print_the_summary(
    world: World,
    monitored: Monitored,
    fail_on_failed: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(world.settings.data_dir))
    with pytest.raises(SystemExit) as failed:  # the planted drift fails its checks
        main(["monitor", "run", DRIFT_DAY.isoformat()])
    assert f"1 day(s) failed:\n  {DRIFT_DAY}: MonitoringFailed" in str(failed.value.code)
    ran = capsys.readouterr().out
    main(["monitor", "show", DRIFT_DAY.isoformat()])
    out = capsys.readouterr().out
    assert out == ran
    assert f"scored day {DRIFT_DAY}" in out and "failed" in out
    assert f"drift share {monitored.drift.drift_share:.3f}" in out
    for name in PLANTED:
        assert name in out
    assert "decision_rate" in out and "score" in out


@pytest.mark.parametrize(
    ("reference", "current", "kind", "method"),
    [
        (range(500), range(100, 600), "numerical", "ks"),
        (["a", "b", "c"] * 100, ["a", "b", "d"] * 100, "categorical", "chisquare"),
        ([0.0, 1.0] * 200, [1.0] * 300, "numerical", "z"),
        (range(2000), range(2000), "numerical", "wasserstein"),
    ],
)
def test_the_test_is_chosen_per_column_as_evidently_does(
    reference: object, current: object, kind: str, method: str
) -> None:
    result = column_drift(
        pd.Series(list(reference)),
        pd.Series(list(current)),
        kind,
        MonitoringConf.load().drift_thresholds,
    )
    assert result.method == method
    assert result.drifted == (method != "wasserstein")


def test_a_version_evaluated_before_has_no_validation_scores(settings: Settings) -> None:
    uri = settings.mlflow_tracking_uri
    client = model_registry.client(uri)
    run = client.create_run(model_registry.ensure_experiment(client, "older", uri))
    assert validation_scores(uri, run.info.run_id) is None


@pytest.fixture()
def s3_settings(settings: Settings, s3_store: S3Store) -> Settings:
    """The metrics table in an S3 bucket over HTTP (moto), the warehouse still local."""
    return settings.model_copy(
        update={"bucket": s3_store.bucket, "aws_endpoint_url": s3_store.client.meta.endpoint_url}
    )


def test_run_days_are_replaced_one_by_one_in_s3(s3_settings: Settings) -> None:
    first, second = DRIFT_DAY, DRIFT_DAY + timedelta(days=1)
    kept = monitor_day(s3_settings, DRIFT_DAY, run_day=first).rows
    monitor_day(s3_settings, DRIFT_DAY, run_day=second)
    again = monitor_day(s3_settings, DRIFT_DAY, run_day=second).rows
    assert delta_location(s3_settings, METRICS_TABLE_KEY).uri.startswith("s3://")
    rows = read_metrics(s3_settings)
    assert rows.groupby("run_day").size().to_dict() == {first: len(kept), second: len(again)}
    assert set(rows.loc[rows["run_day"] == first, "computed_at"]) == set(kept["computed_at"])
    assert set(rows.loc[rows["run_day"] == second, "computed_at"]) == set(again["computed_at"])


def test_the_nightly_stage_fails_a_failed_day_after_publishing_it(
    world: World, monitored: Monitored, fail_on_failed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(world.settings.data_dir))
    before = read_metrics(world.settings, DRIFT_DAY)["computed_at"].max()
    with pytest.raises(MonitoringFailed) as failed:
        nightly.monitor(DRIFT_DAY.isoformat(), "manual__x")
    result = failed.value.result
    assert result["run_id"] == "manual__x" and result["model_version"] == world.version
    assert set(result["drifted_features"]) == set(monitored.drift.drifted_features)
    # 4 of 24 inputs drifted: a warning; the scores that follow them fail the day.
    assert {(c["check"], c["metric"]) for c in result["failed_checks"]} == {
        ("prediction_drift", "score"),
        ("prediction_drift", "decision_rate"),
    }
    assert ("input_drift", "drift_share") in {
        (c["check"], c["metric"]) for c in result["warned_checks"]
    }
    assert read_metrics(world.settings, DRIFT_DAY)["computed_at"].min() > before
    later = DRIFT_DAY + timedelta(days=2)  # never scored: nothing to compare, the stage passes
    passed = nightly.monitor(later.isoformat(), "manual__y")
    assert passed["status"] == "no_reference" and passed["model_version"] is None
    published = read_metrics(world.settings, later)
    # Freshness needs no model, but the day has no batch and this world no online switch.
    assert sorted(published["check"].unique()) == [
        "freshness",
        "input_drift",
        "prediction_drift",
        "serving_skew",
    ]
    assert set(published["status"]) == {"no_reference"}


def test_with_the_shipped_actions_a_failed_day_alerts_and_the_run_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(world.settings.data_dir))
    result = nightly.monitor(DRIFT_DAY.isoformat(), "manual__z")
    assert result["status"] == "failed" and result["alert"] and not result["fails_run"]
    alert = monitoring_alert(result)
    assert alert is not None and "the run goes on" in alert.text


def test_monitor_run_over_a_range_runs_every_day_and_names_the_failed_ones(
    world: World,
    monitored: Monitored,
    fail_on_failed: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drifted day fails; the unscored day after it still runs (no reference: passes)."""
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(world.settings.data_dir))
    after = DRIFT_DAY + timedelta(days=1)
    days = [CLEAN_DAYS[-1], DRIFT_DAY, after]
    expected_failed = [
        d for d in days if d in monitored.clean and monitored.clean[d].status == "failed"
    ]
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as failed:
        main(["monitor", "run", "--start", days[0].isoformat(), "--end", after.isoformat()])
    message = str(failed.value.code)
    assert f"{len(expected_failed) + 1} day(s) failed" in message
    assert f"{DRIFT_DAY}: MonitoringFailed" in message and str(after) not in message
    progress = [r.getMessage() for r in caplog.records if "days:" in r.getMessage()]
    assert [p.split(" days:")[0] for p in progress] == [f"monitoring {n}/3" for n in (1, 2, 3)]
    assert all(str(day) in line for day, line in zip(days, progress, strict=True))
    assert "elapsed" in progress[-1]
    out = capsys.readouterr().out
    assert all(f"scored day {day}" in out for day in days)
    published = read_metrics(world.settings, after)
    assert set(published.loc[published["check"] != "freshness", "status"]) == {"no_reference"}
    with pytest.raises(SystemExit, match="not both"):
        main(["monitor", "run", DRIFT_DAY.isoformat(), "--start", DRIFT_DAY.isoformat()])


def _summary(
    share: float, score: float, status: tuple[str, str, str], *realized: tuple
) -> MonitoringSummary:
    """A day of three inputs (two drifted) and three graded checks, as `monitor_day` writes it,
    plus any `realized` rows (check, metric, value, threshold, status)."""
    graded = [
        ("input_drift", "drift_share", share, 0.1, status[0]),
        ("prediction_drift", "score", score, 0.1, status[1]),
        ("prediction_drift", "decision_rate", float("inf"), 1.0, status[2]),
        *realized,
    ]
    inputs = [("amount", 0.4, True), ("country", 0.3, True), ("hour_of_day", 0.01, False)]
    rows = [
        {
            "check": "input_drift",
            "feature_or_metric": name,
            "value": value,
            "threshold": 0.1,
            "drifted": drifted,
            "status": "warning" if drifted else "ok",
        }
        for name, value, drifted in inputs
    ] + [
        {
            "check": check,
            "feature_or_metric": metric,
            "value": value,
            "threshold": warning,
            "drifted": value >= warning,
            "status": state,
        }
        for check, metric, value, warning, state in graded
    ]
    frame = pd.DataFrame(rows).assign(
        run_day=DRIFT_DAY,
        scored_day=DRIFT_DAY,
        model_version="7",
        reference="train rows",
        method="m",
    )
    return MonitoringSummary.from_rows(frame)


def test_a_failed_day_fails_the_run_with_one_alert_naming_day_version_checks_features() -> None:
    result = _summary(0.67, 0.12, ("failed", "warning", "ok")).result()
    json.dumps(result, allow_nan=False)
    assert result["status"] == "failed"
    assert result["checks"] == {"failed": 1, "warning": 1, "ok": 1}
    assert result["failed_checks"] == [
        {"check": "input_drift", "metric": "drift_share", "value": 0.67, "warning_at": 0.1}
    ]
    assert [c["metric"] for c in result["warned_checks"]] == ["score"]
    assert result["drifted_features"] == ["amount", "country"]
    assert result["features_compared"] == 3
    with pytest.raises(MonitoringFailed) as failed:
        checked(result, FAIL_ON_FAILED)
    raised = failed.value.result
    assert raised["fails_run"] and raised["alert"]
    alert = monitoring_alert(raised)
    assert alert is not None
    for text in (str(failed.value), alert.text):
        assert str(DRIFT_DAY) in text and "7" in text and "drift_share" in text
        assert "amount, country" in text and f"mlpipeline monitor show {DRIFT_DAY}" in text
    assert alert.subject == f"[fraud pipeline] MONITORING FAILED for day {DRIFT_DAY} (model 7)"
    assert "score: 0.12 (warning at 0.1)" in alert.text and "marked failed" in alert.text
    assert alert.document()["kind"] == "monitoring"


def test_a_warning_day_alerts_and_passes_an_ok_day_is_silent() -> None:
    warned = checked(_summary(0.2, 0.12, ("warning", "warning", "ok")).result(), FAIL_ON_FAILED)
    assert warned["alert"] and not warned["fails_run"]
    alert = monitoring_alert(warned)
    assert alert is not None and "MONITORING WARNING" in alert.subject
    assert "the run goes on" in alert.text and "Failed checks" not in alert.text
    quiet = checked(_summary(0.0, 0.01, ("ok", "ok", "ok")).result(), FAIL_ON_FAILED)
    assert not quiet["alert"] and monitoring_alert(quiet) is None
    unbounded = _summary(0.0, 0.01, ("ok", "ok", "failed")).result()
    assert unbounded["failed_checks"][0]["value"] is None  # |rate / 0 - 1|: not a JSON number
    with pytest.raises(MonitoringFailed) as failed:
        checked(unbounded, FAIL_ON_FAILED)
    assert "decision_rate: not computable" in monitoring_alert(failed.value.result).text


def test_a_champion_below_its_floor_on_matured_labels_alerts_the_rollback_command() -> None:
    below = ("realized_performance", "roc_auc_floor", 0.61, 0.7, "failed")
    above = ("realized_performance", "pr_auc_floor", 0.2, 0.05, "ok")
    result = checked(_summary(0.0, 0.01, ("ok", "ok", "ok"), below, above).result(), SHIPPED)
    assert result["below_floors"] == ["roc_auc"] and result["alert"]
    text = monitoring_alert(result).text
    assert 'mlpipeline model rollback --reason "roc_auc below floor' in text
    assert "version 7" in text
    healthy = checked(_summary(0.0, 0.01, ("ok", "ok", "ok"), above).result(), SHIPPED)
    assert healthy["below_floors"] == [] and monitoring_alert(healthy) is None


def test_the_actions_of_a_status_come_from_the_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = copy.deepcopy(pipeline_conf())
    conf["monitoring"]["actions"] = {"alert": "warning", "fail_run": "failed"}
    monkeypatch.setattr("mlpipeline.monitoring.conf.pipeline_conf", lambda: conf)
    assert MonitoringConf.load().actions == FAIL_ON_FAILED
    failed_day = _summary(0.67, 0.12, ("failed", "ok", "ok")).result()
    alert_only = checked(failed_day, MonitoringActions(alert="failed", fail_run="never"))
    assert alert_only["alert"] and "the run goes on" in monitoring_alert(alert_only).text
    warned = _summary(0.2, 0.01, ("warning", "ok", "ok")).result()
    assert not checked(warned, MonitoringActions(alert="failed", fail_run="failed"))["alert"]
    with pytest.raises(MonitoringFailed):
        checked(warned, MonitoringActions(alert="never", fail_run="warning"))
    silent = checked(failed_day, MonitoringActions(alert="never", fail_run="never"))
    assert monitoring_alert(silent) is None


def test_an_unknown_action_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = copy.deepcopy(pipeline_conf())
    conf["monitoring"]["actions"]["fail_run"] = "fail"
    monkeypatch.setattr("mlpipeline.monitoring.conf.pipeline_conf", lambda: conf)
    with pytest.raises(ValueError, match="fail_run are one of"):
        MonitoringConf.load()


def test_a_feature_threshold_for_an_unknown_test_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = copy.deepcopy(pipeline_conf())
    conf["monitoring"]["feature_drift_thresholds"]["txn_count_24h"] = {"wasserstien": 0.2}
    monkeypatch.setattr("mlpipeline.monitoring.conf.pipeline_conf", lambda: conf)
    with pytest.raises(
        ValueError, match=r"feature_drift_thresholds names unknown tests \['wasserstien'\]"
    ):
        MonitoringConf.load()


def test_a_day_with_nothing_to_compare_passes_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = pd.DataFrame(
        [
            {
                "check": c,
                "feature_or_metric": m,
                "value": None,
                "threshold": None,
                "drifted": None,
                "status": "no_reference",
                "reference": "no scores",
                "method": None,
                "run_day": DRIFT_DAY,
                "scored_day": DRIFT_DAY,
                "model_version": None,
            }
            for c, m in (("input_drift", "drift_share"), ("prediction_drift", "score"))
        ]
    )
    result = MonitoringSummary.from_rows(rows).result()
    strictest = MonitoringActions(alert="warning", fail_run="warning")
    with caplog.at_level(logging.INFO):
        result = checked(result, strictest)
    assert result["status"] == "no_reference" and not result["alert"]
    assert any("nothing to compare" in r.getMessage() for r in caplog.records)
    assert monitoring_alert(result) is None
