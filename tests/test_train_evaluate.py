"""Training, evaluation and promotion against a real MLflow store (sqlite + local artifacts).

The data is synthetic with planted signal: fraud is likelier for amounts far above the
customer's mean, abroad, at night, online and in risky merchant categories.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import ConfigurationError, Settings
from mlpipeline.pipeline import nightly
from mlpipeline.training import evaluate, model_registry
from mlpipeline.training.candidates import Candidate, load_candidates, training_jobs
from mlpipeline.training.evaluate import VALIDATION_SCORES, EvaluationRules
from mlpipeline.training.metrics import choose_threshold, classification_metrics, threshold_report
from mlpipeline.training.promotion import evaluate_and_promote
from mlpipeline.training.split import Split, split_dataset
from mlpipeline.training.train import (
    CandidateResult,
    batch_revisions,
    train_candidate,
    training_skip_reason,
)
from mlpipeline.warehouse import meta

pytestmark = pytest.mark.unit

CUTOFF = date(2026, 3, 25)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Feature:
    """Same shape as mlpipeline.features.dbt_project.FeatureSpec (no dbt needed here)."""

    name: str
    type: str
    default: Any = None


SPEC = [
    Feature("txn_count_24h", "BIGINT", 0),
    Feature("txn_count_30d", "BIGINT", 0),
    Feature("amount_mean_30d", "DECIMAL(18,2)"),
    Feature("amount_max_30d", "DECIMAL(18,2)"),
    Feature("usual_country", "VARCHAR"),
    Feature("online_share_30d", "DOUBLE"),
    Feature("last_txn_ts", "TIMESTAMP"),
    Feature("tenure_days", "INTEGER"),
]


def synthetic_training_set(n: int = 7000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, 400, n)
    event_ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.uniform(0, 60 * 86400, n), unit="s")
    mean = np.round(rng.lognormal(3.5, 0.5, 400), 2)[customer]
    home = np.array(["DE", "FR", "NL", "ES"])[rng.integers(0, 4, 400)][customer]
    foreign = rng.random(n) < 0.1
    country = np.where(foreign, np.array(["US", "BR", "NG", "TH"])[rng.integers(0, 4, n)], home)
    channel = np.array(["online", "pos", "contactless"])[rng.integers(0, 3, n)]
    category = np.array(["grocery", "fuel", "travel", "electronics", "jewelry", "digital_goods"])[
        rng.integers(0, 6, n)
    ]
    ratio = rng.lognormal(0, 0.6, n)
    risky = np.isin(category, ["jewelry", "electronics", "digital_goods"])
    logit = (
        -5.0
        + 3.2 * np.log(ratio)
        + 1.8 * foreign
        + 1.0 * (event_ts.hour < 6)
        + 0.8 * (channel == "online")
        + 0.8 * risky
    )
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    new = rng.random(n) < 0.08  # customers without history: the snapshot's defaults
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i:06d}" for i in range(n)],
            "customer_id": [f"c{c:04d}" for c in customer],
            "merchant_id": [f"m{m:03d}" for m in rng.integers(0, 60, n)],
            "merchant_category": category,
            "amount": np.round(mean * ratio, 2),
            "currency": "EUR",
            "country": country,
            "channel": channel,
            "event_ts": event_ts,
            "batch_id": "transactions-" + event_ts.strftime("%Y-%m-%d"),
            "revision": "r1",
            "txn_count_24h": np.where(new, 0, rng.poisson(2, n)),
            "txn_count_30d": np.where(new, 0, rng.poisson(30, n)),
            "amount_mean_30d": np.where(new, np.nan, mean),
            "amount_max_30d": np.where(new, np.nan, mean * 3),
            "usual_country": pd.Series(home).where(~new, None),
            "online_share_30d": np.where(new, np.nan, rng.random(n)),
            "last_txn_ts": (
                event_ts - pd.to_timedelta(rng.exponential(2 * 86400, n), unit="s")
            ).where(~new),
            "tenure_days": np.where(new, np.nan, rng.integers(0, 400, n)),
            "is_fraud": is_fraud,
            "training_cutoff": CUTOFF,
        }
    )
    return frame


LINEAGE = {
    "training_cutoff": CUTOFF,
    "batch_revisions": {f"transactions-2026-01-{d:02d}": f"rev{d}" for d in range(1, 31)},
    "dbt_manifest_hash": "manifest-abc123",
    "git_commit": "test-commit-0001",
}
WEAK = Candidate(
    name="amount_only", estimator="logistic_regression", scale=True, include=("amount",)
)
LENIENT = EvaluationRules(floors={}, beat_baselines=False, min_improvement=0.0)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def split() -> Split:
    return split_dataset(synthetic_training_set())


@pytest.fixture(scope="module")
def outbound() -> Iterator[list[Any]]:
    """Fail and record any connection leaving the machine (MLflow telemetry, pip lookups)."""
    attempts: list[Any] = []
    original = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            attempts.append(address)
            raise OSError(f"the test blocks the outbound connection to {address}")
        return original(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded)
        yield attempts


@pytest.fixture(scope="module")
def trained(tracking_uri: str, split: Split, outbound: list[Any]) -> dict[str, CandidateResult]:
    """The configured candidates plus a deliberately weak one, all on the same split."""
    results = {}
    for candidate in [*load_candidates(), WEAK]:
        results[candidate.name] = train_candidate(
            split, candidate, feature_columns=SPEC, tracking_uri=tracking_uri, lineage=LINEAGE
        )
    return results


@pytest.fixture()
def registry(tracking_uri: str, trained: dict[str, CandidateResult]) -> Any:
    """The module's registry with no champion or challenger, whatever earlier tests promoted."""
    client = model_registry.client(tracking_uri)
    for alias in (model_registry.CHAMPION_ALIAS, model_registry.CHALLENGER_ALIAS):
        if model_registry.version_for_alias(tracking_uri, alias) is not None:
            client.delete_registered_model_alias(model_registry.MODEL_NAME, alias)
    return client


def strong(trained: dict[str, CandidateResult]) -> list[CandidateResult]:
    return [trained["logistic_regression"], trained["hist_gradient_boosting"]]


def alias_version(tracking_uri: str, alias: str) -> str | None:
    version = model_registry.version_for_alias(tracking_uri, alias)
    return None if version is None else str(version.version)


def test_candidates_config_declares_two_estimators(tmp_path: Path) -> None:
    candidates = load_candidates()
    assert {c.estimator for c in candidates} >= {"logistic_regression", "hist_gradient_boosting"}
    assert next(c for c in candidates if c.estimator == "logistic_regression").scale

    bad = tmp_path / "candidates.yaml"
    bad.write_text(
        "candidates:\n  - {name: a, estimator: logistic_regression, params: {depth: 3}}\n"
    )
    with pytest.raises(ValueError, match=r"no parameters \['depth'\]"):
        load_candidates(bad)
    bad.write_text("candidates:\n  - {name: a, estimator: xgboost}\n")
    with pytest.raises(ValueError, match="estimator 'xgboost' is unknown"):
        load_candidates(bad)


def test_training_logs_params_metrics_model_and_lineage(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult]
) -> None:
    client = model_registry.client(tracking_uri)
    expected = {
        "training_cutoff": "2026-03-25",
        "split_id": split.split_id,
        "dbt_manifest_hash": "manifest-abc123",
        "git_commit": "test-commit-0001",
    }
    for name in ("logistic_regression", "hist_gradient_boosting"):
        result = trained[name]
        assert not result.reused
        assert result.validation_metrics["roc_auc"] > 0.8  # the planted signal is learnt
        run = client.get_run(result.run_id)
        version = client.get_model_version(model_registry.MODEL_NAME, result.model_version)
        for tags in (run.data.tags, version.tags):
            assert {k: tags[k] for k in expected} == expected
            assert tags["batch_revisions"].startswith("sha256:")
            assert "30 batch revisions" in tags["batch_revisions"]
            assert tags["candidate"] == name
        assert version.run_id == result.run_id
        assert run.data.params["estimator"] == name
        assert "amount_to_mean_30d" in run.data.params["features.request"]
        assert run.data.metrics["val_pr_auc"] == pytest.approx(result.validation_metrics["pr_auc"])
        lineage = json.loads(_artifact_text(client, result.run_id, "lineage.json"))
        assert lineage["batch_revisions"] == LINEAGE["batch_revisions"]

        with model_registry.tracking(tracking_uri) as mlflow:
            info = mlflow.models.get_model_info(result.model_uri)
        inputs = set(info.signature.inputs.input_names())
        assert {"amount", "event_ts", "last_txn_ts", "merchant_category", "usual_country"} <= inputs
        assert info.saved_input_example_info is not None
    assert (
        trained["logistic_regression"].model_version
        != trained["hist_gradient_boosting"].model_version
    )


def _artifact_text(client: Any, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def test_same_split_and_config_reuses_the_run(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult]
) -> None:
    client = model_registry.client(tracking_uri)
    experiment = client.get_experiment_by_name(model_registry.EXPERIMENT)
    runs_before = len(client.search_runs([experiment.experiment_id]))
    versions_before = len(client.search_model_versions(f"name = '{model_registry.MODEL_NAME}'"))
    candidate = next(c for c in load_candidates() if c.name == "hist_gradient_boosting")

    again = train_candidate(
        split, candidate, feature_columns=SPEC, tracking_uri=tracking_uri, lineage=LINEAGE
    )

    first = trained["hist_gradient_boosting"]
    assert again.reused
    assert (again.run_id, again.model_version) == (first.run_id, first.model_version)
    assert again.validation_metrics == pytest.approx(first.validation_metrics)
    assert CandidateResult.from_dict(json.loads(json.dumps(again.to_dict()))) == again
    assert len(client.search_runs([experiment.experiment_id])) == runs_before
    assert (
        len(client.search_model_versions(f"name = '{model_registry.MODEL_NAME}'"))
        == versions_before
    )


def test_first_promotion_sets_champion_threshold_and_challenger(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    rules = EvaluationRules.from_conf()  # conf/candidates.yaml: floors, baselines, FPR 1%
    outcome = evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=rules
    )

    best = max(outcome.evaluations, key=lambda e: e.validation["pr_auc"])
    other = next(e for e in outcome.evaluations if e is not best)
    assert (outcome.decision, outcome.champion_before) == ("promoted", None)
    assert alias_version(tracking_uri, "champion") == best.version == outcome.champion_version
    assert alias_version(tracking_uri, "challenger") == other.version
    for evaluation in outcome.evaluations:
        version = registry.get_model_version(model_registry.MODEL_NAME, evaluation.version)
        assert float(version.tags["decision_threshold"]) == evaluation.threshold
        artifacts = {a.path for a in registry.list_artifacts(evaluation.run_id, "evaluation")}
        assert artifacts == {
            "evaluation/roc_pr_curves.png",
            "evaluation/confusion_matrix.png",
            VALIDATION_SCORES,
        }
        kept = evaluate.validation_scores(tracking_uri, evaluation.run_id)
        assert kept is not None and len(kept) == len(split.validation)
        run = registry.get_run(evaluation.run_id)
        assert run.data.metrics["test_pr_auc"] == pytest.approx(evaluation.test["pr_auc"])
    assert (
        registry.get_model_version(model_registry.MODEL_NAME, best.version).tags[
            "promotion_decision"
        ]
        == "promoted"
    )

    ref = model_registry.resolve_champion(tracking_uri)
    assert ref is not None
    assert (ref.version, ref.model_uri) == (best.version, f"models:/fraud_detector/{best.version}")
    assert ref.run_id == best.run_id and ref.training_cutoff == CUTOFF
    assert ref.decision_threshold == best.threshold
    model = model_registry.load_model(ref)
    validation_scores = model.predict_proba(split.validation.drop(columns=["is_fraud"]))[:, 1]
    at_threshold = threshold_report(
        split.validation["is_fraud"], validation_scores, ref.decision_threshold
    )
    assert at_threshold["fpr"] <= rules.target_fpr
    assert at_threshold["recall"] > 0.1

    # The champion beats a majority-class model and the best single feature on the test rows.
    majority, single = outcome.baselines["majority"], outcome.baselines["best_feature"]
    assert single["name"] is not None
    assert best.test["pr_auc"] > single["pr_auc"] > majority["pr_auc"]
    assert best.test["roc_auc"] > majority["roc_auc"] == 0.5


def test_online_style_rows_score_through_the_saved_pipeline(
    tracking_uri: str, trained: dict[str, CandidateResult]
) -> None:
    model = model_registry.load_version(
        tracking_uri, trained["hist_gradient_boosting"].model_version
    )
    base = {
        "transaction_id": "t-live",
        "customer_id": "c0001",
        "merchant_id": "m001",
        "currency": "EUR",
        "txn_count_24h": 1,
        "txn_count_30d": 25,
        "amount_mean_30d": "40.00",
        "amount_max_30d": 120.0,
        "usual_country": "DE",
        "online_share_30d": 0.2,
        "last_txn_ts": "2026-03-01T10:00:00Z",
        "tenure_days": 300,
    }
    usual = {
        "amount": 35.0,
        "country": "DE",
        "channel": "pos",
        "merchant_category": "grocery",
        "event_ts": "2026-03-02T13:00:00Z",
    }
    odd = {
        "amount": 900.0,
        "country": "NG",
        "channel": "online",
        "merchant_category": "jewelry",
        "event_ts": "2026-03-02T03:00:00Z",
    }
    unknown_customer = {
        **odd,
        **{
            k: None
            for k in (
                "amount_mean_30d",
                "amount_max_30d",
                "usual_country",
                "online_share_30d",
                "last_txn_ts",
                "tenure_days",
            )
        },
    }
    rows = pd.DataFrame([{**base, **usual}, {**base, **odd}, {**base, **unknown_customer}])

    scores = model.predict_proba(rows)[:, 1]

    assert np.isfinite(scores).all()
    assert scores[1] > 10 * scores[0]
    with pytest.raises(KeyError, match="missing columns"):
        model.predict_proba(rows.drop(columns=["last_txn_ts"]))


def test_promotion_needs_the_margin(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    weak = trained["amount_only"]
    first = evaluate_and_promote(
        [weak], split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=LENIENT
    )
    assert first.decision == "promoted"
    assert alias_version(tracking_uri, "champion") == weak.model_version

    unreachable = EvaluationRules(floors={}, beat_baselines=True, min_improvement=1.0)
    kept = evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=unreachable
    )
    assert kept.decision == "kept_champion"
    assert "vs champion version " + weak.model_version in kept.reason
    assert "required +1.0000" in kept.reason
    assert alias_version(tracking_uri, "champion") == weak.model_version
    assert alias_version(tracking_uri, "challenger") == kept.best_version
    tags = registry.get_model_version(model_registry.MODEL_NAME, kept.best_version).tags
    assert (tags["promotion_decision"], tags["promotion_reason"]) == ("kept_champion", kept.reason)

    reachable = EvaluationRules(floors={}, beat_baselines=True, min_improvement=0.02)
    promoted = evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=reachable
    )
    assert (promoted.decision, promoted.champion_before) == ("promoted", weak.model_version)
    assert alias_version(tracking_uri, "champion") == promoted.best_version
    assert promoted.challenger_version != promoted.best_version
    weak_tags = registry.get_model_version(model_registry.MODEL_NAME, weak.model_version).tags
    assert weak_tags["promotion_decision"] == "promoted"  # why it once won stays on record

    again = evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=reachable
    )
    assert again.decision == "already_champion"
    assert alias_version(tracking_uri, "champion") == promoted.best_version


def test_floors_block_even_the_first_champion(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    strict = EvaluationRules(floors={"pr_auc": 0.99, "roc_auc": 0.5})
    outcome = evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=strict
    )

    assert outcome.decision == "rejected"
    assert "below the floor 0.9900" in outcome.reason
    assert "roc_auc" not in outcome.reason
    assert model_registry.resolve_champion(tracking_uri) is None


def test_weak_model_does_not_beat_the_single_feature_baseline(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    outcome = evaluate_and_promote(
        [trained["amount_only"]],
        split,
        feature_columns=SPEC,
        tracking_uri=tracking_uri,
        rules=EvaluationRules(floors={}),
    )

    assert outcome.decision == "rejected"
    assert "does not beat the best single feature baseline" in outcome.reason
    assert model_registry.resolve_champion(tracking_uri) is None


def test_older_cutoff_never_replaces_a_newer_champion(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    weak = trained["amount_only"]
    evaluate_and_promote(
        [weak], split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=LENIENT
    )
    older_split = split_dataset(synthetic_training_set(seed=5), strategy="random")
    candidate = next(c for c in load_candidates() if c.name == "logistic_regression")
    older = train_candidate(
        older_split,
        candidate,
        feature_columns=SPEC,
        tracking_uri=tracking_uri,
        lineage={**LINEAGE, "training_cutoff": date(2026, 3, 18)},
    )

    outcome = evaluate_and_promote(
        [older],
        older_split,
        feature_columns=SPEC,
        tracking_uri=tracking_uri,
        rules=EvaluationRules(floors={}, beat_baselines=False, min_improvement=-1.0),
    )

    assert outcome.decision == "kept_champion"
    assert "older than the champion's" in outcome.reason
    assert alias_version(tracking_uri, "champion") == weak.model_version
    with pytest.raises(ValueError, match="trained on another split"):
        evaluate_and_promote([older], split, feature_columns=SPEC, tracking_uri=tracking_uri)


def test_champion_that_cannot_read_the_current_rows_is_replaced(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], registry: Any
) -> None:
    # A champion trained when the snapshot still declared an extra feature, since removed.
    wider_spec = [*SPEC, Feature("chargebacks_total", "BIGINT", 0)]
    wider = synthetic_training_set(seed=9).assign(chargebacks_total=0)
    wider_split = split_dataset(wider)
    old_champion = train_candidate(
        wider_split,
        Candidate(
            name="with_chargebacks",
            estimator="logistic_regression",
            scale=True,
            include=("amount", "chargebacks_total"),
        ),
        feature_columns=wider_spec,
        tracking_uri=tracking_uri,
        lineage=LINEAGE,
    )
    evaluate_and_promote(
        [old_champion],
        wider_split,
        feature_columns=wider_spec,
        tracking_uri=tracking_uri,
        rules=LENIENT,
    )
    assert alias_version(tracking_uri, "champion") == old_champion.model_version

    outcome = evaluate_and_promote(
        strong(trained),
        split,
        feature_columns=SPEC,
        tracking_uri=tracking_uri,
        rules=EvaluationRules(min_improvement=0.5),
    )

    assert outcome.decision == "promoted"
    assert (
        "cannot score the current rows" in outcome.reason and "chargebacks_total" in outcome.reason
    )
    assert alias_version(tracking_uri, "champion") == outcome.best_version
    assert (
        json.loads(json.dumps(outcome.to_dict()))["champion_before"] == old_champion.model_version
    )


def test_cold_start_and_batch_lineage(settings) -> None:
    rows = synthetic_training_set(500)
    assert "training needs at least 2000 rows" in training_skip_reason(rows)
    assert training_skip_reason(synthetic_training_set()) is None

    with warehouse.connect(settings) as con:
        meta.ensure_meta(con)
        now = meta.utcnow()
        for batch, revision, day, status in [
            ("transactions-2026-03-24", "r1", date(2026, 3, 24), "current"),
            ("transactions-2026-03-24", "r0", date(2026, 3, 24), "ingested"),
            ("chargebacks-2026-03-25", "r7", date(2026, 3, 25), "current"),
            ("transactions-2026-03-26", "r2", date(2026, 3, 26), "current"),
        ]:
            con.execute(
                "INSERT INTO meta.batches (batch_id, revision, dataset, dt, status, "
                "content_checksum, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'x', ?, ?)",
                [batch, revision, batch.split("-")[0], day, status, now, now],
            )
        assert batch_revisions(con, CUTOFF) == {
            "chargebacks-2026-03-25": "r7",
            "transactions-2026-03-24": "r1",
        }


def test_mlflow_never_leaves_the_machine(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult], outbound: list[Any]
) -> None:
    evaluate_and_promote(
        strong(trained), split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=LENIENT
    )
    assert outbound == []
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_no_champion_and_relative_uri(tmp_path: Path) -> None:
    assert model_registry.resolve_champion(f"sqlite:///{tmp_path / 'empty.db'}") is None
    with pytest.raises(ValueError, match="not absolute"):
        model_registry.resolve_champion("sqlite:///data/mlflow.db")
    assert model_registry.artifact_location(f"sqlite:///{tmp_path / 'm.db'}") == (
        (tmp_path / "artifacts").as_uri()
    )


def test_threshold_rules_and_metrics() -> None:
    y = np.array([0] * 90 + [1] * 10)
    proba = np.concatenate([np.linspace(0.0, 0.6, 90), np.linspace(0.5, 0.9, 10)])

    strict = choose_threshold(y, proba, rule="target_fpr", target_fpr=0.0)
    assert threshold_report(y, proba, strict)["fp"] == 0
    loose = choose_threshold(y, proba, rule="target_fpr", target_fpr=0.1)
    report = threshold_report(y, proba, loose)
    within_budget = [
        threshold_report(y, proba, t) for t in proba if threshold_report(y, proba, t)["fpr"] <= 0.1
    ]
    assert report["fpr"] <= 0.1
    assert report["recall"] == max(r["recall"] for r in within_budget) == 0.9
    best_f1 = choose_threshold(y, proba, rule="max_f1")
    assert (
        threshold_report(y, proba, best_f1)["f1"]
        >= max(threshold_report(y, proba, t)["f1"] for t in np.linspace(0, 1, 101)) - 1e-9
    )

    metrics = classification_metrics(y, proba)
    assert set(metrics) == {"roc_auc", "pr_auc", "log_loss", "brier", "recall_at_1pct_fpr"}
    with pytest.raises(ValueError, match="single class"):
        classification_metrics(np.zeros(10), np.full(10, 0.1))
    with pytest.raises(ValueError, match="threshold_rule"):
        EvaluationRules(threshold_rule="coin_flip")
    with pytest.raises(ValueError, match="lower is better"):
        EvaluationRules(selection_metric="log_loss")


def test_split_warnings_reach_the_log_and_the_mlflow_run(
    tracking_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    uneven = split_dataset(
        synthetic_training_set(), strategy="random", ratios=(0.9, 0.05, 0.05), min_part_rows=500
    )
    assert len(uneven.warnings) == 2

    with caplog.at_level(logging.WARNING, logger="mlpipeline.training.train"):
        result = train_candidate(
            uneven, WEAK, feature_columns=SPEC, tracking_uri=tracking_uri, lineage=LINEAGE
        )

    logged = [r.getMessage() for r in caplog.records if r.name == "mlpipeline.training.train"]
    assert all(any(w in message for message in logged) for w in uneven.warnings)
    client = model_registry.client(tracking_uri)
    tag = client.get_run(result.run_id).data.tags["split_warnings"]
    assert tag.startswith(f"{len(uneven.warnings)}: ") and uneven.warnings[0] in tag
    version = client.get_model_version(model_registry.MODEL_NAME, result.model_version)
    assert version.tags["split_warnings"] == tag
    summary = json.loads(_artifact_text(client, result.run_id, "split_summary.json"))
    assert summary["warnings"] == uneven.warnings
    # The run also records the cores its task was limited to.
    assert client.get_run(result.run_id).data.tags["training_cores"] == str(training_jobs())


def test_each_training_task_gets_its_share_of_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import joblib

    settings = Settings.under(tmp_path)
    assert training_jobs(settings) == max(1, joblib.cpu_count() // 2)
    one_at_a_time = settings.model_copy(update={"training_parallel_tasks": 1})
    assert training_jobs(one_at_a_time) == joblib.cpu_count()
    crowded = settings.model_copy(update={"training_parallel_tasks": joblib.cpu_count() * 4})
    assert training_jobs(crowded) == 1
    # The DAG maps as many train tasks at once as the environment says (2 unless set).
    monkeypatch.delenv("MLPIPELINE_TRAINING_PARALLEL_TASKS", raising=False)
    assert nightly.training_parallelism() == 2
    monkeypatch.setenv("MLPIPELINE_TRAINING_PARALLEL_TASKS", "3")
    assert nightly.training_parallelism() == 3
    monkeypatch.setenv("MLPIPELINE_TRAINING_PARALLEL_TASKS", "0")
    with pytest.raises(ConfigurationError, match="MLPIPELINE_TRAINING_PARALLEL_TASKS"):
        nightly.training_parallelism()


def test_a_candidates_file_still_holding_resources_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "candidates.yaml"
    conf.write_text("resources: {parallel_tasks: 2}\ncandidates: []\n")
    with pytest.raises(ValueError, match="MLPIPELINE_TRAINING_PARALLEL_TASKS"):
        load_candidates(conf)


def test_backfill_runs_do_not_train_unless_asked(settings) -> None:
    from airflow.utils.types import DagRunType

    assert nightly.training_wanted(None, DagRunType.BACKFILL_JOB)[0] is False
    assert nightly.training_wanted(True, DagRunType.BACKFILL_JOB) == (True, "param train=true")
    assert nightly.training_wanted(None, DagRunType.SCHEDULED)[0] is True
    assert nightly.training_wanted(None, "manual")[0] is True
    assert nightly.training_wanted(False, "scheduled") == (False, "param train=false")

    with pytest.raises(nightly.NothingToDo, match="backfill runs do not train"):
        nightly.check_training_set("2026-03-25", "backfill__1", run_type="backfill")
    # Asked explicitly, the backfill goes on to read the training set (none built here).
    with pytest.raises(RuntimeError, match="marts.training_set does not exist"):
        nightly.check_training_set("2026-03-25", "backfill__1", train=True, run_type="backfill")
