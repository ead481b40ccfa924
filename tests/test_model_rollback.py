"""`mlpipeline model rollback` / `release` on a real MLflow store (sqlite + local artifacts).

One story on one registry: two promotions, a rollback through the CLI, a nightly evaluation
while pinned (it evaluates, records why, promotes nothing), a release, and the guards: a
rolled-back version is never promoted again, a rollback needs an earlier champion.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpipeline import cli
from mlpipeline.training import champion_alias, model_registry
from mlpipeline.training.candidates import Candidate
from mlpipeline.training.evaluate import EvaluationRules
from mlpipeline.training.promotion import evaluate_and_promote
from mlpipeline.training.split import Split, split_dataset
from mlpipeline.training.train import CandidateResult, train_candidate
from tests.test_train_evaluate import LINEAGE, SPEC, synthetic_training_set

pytestmark = pytest.mark.unit

# Promote whatever is evaluated unless something else (pin, rollback, cutoff) forbids it.
ALWAYS = EvaluationRules(floors={}, beat_baselines=False, min_improvement=-1.0)
CANDIDATES = {
    "first": Candidate(
        name="first", estimator="logistic_regression", scale=True, include=("amount",)
    ),
    "second": Candidate(
        name="second",
        estimator="logistic_regression",
        scale=True,
        include=("amount", "channel"),
    ),
    "third": Candidate(name="third", estimator="logistic_regression", scale=True),
}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def split() -> Split:
    return split_dataset(synthetic_training_set(4000, seed=3))


@pytest.fixture(scope="module")
def trained(tracking_uri: str, split: Split) -> dict[str, CandidateResult]:
    return {
        name: train_candidate(
            split, candidate, feature_columns=SPEC, tracking_uri=tracking_uri, lineage=LINEAGE
        )
        for name, candidate in CANDIDATES.items()
    }


@pytest.fixture()
def env(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI reads: the tracking URI from the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)


def promote(trained: dict, name: str, split: Split, tracking_uri: str) -> Any:
    return evaluate_and_promote(
        [trained[name]], split, feature_columns=SPEC, tracking_uri=tracking_uri, rules=ALWAYS
    )


def champion(tracking_uri: str) -> str | None:
    ref = model_registry.resolve_champion(tracking_uri)
    return None if ref is None else ref.version


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> dict:
    cli.main(argv)
    return json.loads(capsys.readouterr().out)


def version_tags(tracking_uri: str, version: str) -> dict[str, str]:
    client = model_registry.client(tracking_uri)
    return dict(client.get_model_version(model_registry.MODEL_NAME, version).tags)


def test_nothing_to_roll_back_without_a_champion(
    tracking_uri: str, env: None, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit, match="has no champion to roll back"):
        cli.main(["model", "rollback", "--reason", "no model yet"])
    assert run_cli(["model", "release"], capsys)["released"] is False


def test_rollback_restores_the_previous_champion_and_pins_it(
    tracking_uri: str,
    split: Split,
    trained: dict[str, CandidateResult],
    env: None,
    capsys: pytest.CaptureFixture,
) -> None:
    first, second = trained["first"].model_version, trained["second"].model_version
    assert promote(trained, "first", split, tracking_uri).decision == "promoted"
    assert promote(trained, "second", split, tracking_uri).decision == "promoted"
    assert champion_alias.champion_history(tracking_uri) == [first, second]
    threshold_of_first = float(version_tags(tracking_uri, first)["decision_threshold"])

    out = run_cli(["model", "rollback", "--reason", "scores drifted", "--by", "oncall"], capsys)

    assert (out["champion"], out["rolled_back_from"]) == (first, second)
    ref = model_registry.resolve_champion(tracking_uri)
    # Scoring resolves the restored version, with its own threshold.
    assert ref is not None and (ref.version, ref.decision_threshold) == (first, threshold_of_first)
    pin = champion_alias.champion_pin(tracking_uri)
    assert pin is not None
    assert (pin.version, pin.rolled_back_from, pin.pinned_by, pin.reason) == (
        first,
        second,
        "oncall",
        "scores drifted",
    )
    tags = version_tags(tracking_uri, second)
    assert tags["rolled_back_reason"] == "scores drifted" and tags["rolled_back_by"] == "oncall"
    assert "restored_at" in version_tags(tracking_uri, first)
    assert champion_alias.champion_history(tracking_uri) == [first]


def test_pinned_champion_is_evaluated_against_but_not_replaced(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult]
) -> None:
    first, third = trained["first"].model_version, trained["third"].model_version
    assert champion(tracking_uri) == first

    outcome = promote(trained, "third", split, tracking_uri)

    assert outcome.decision == "pinned"
    assert f"champion is pinned to version {first}" in outcome.reason
    assert "Without the pin: promoted" in outcome.reason
    assert "mlpipeline model release" in outcome.reason
    assert champion(tracking_uri) == first and outcome.champion_version == first
    # Evaluation still ran and recorded its decision on the run and the version.
    client = model_registry.client(tracking_uri)
    run = client.get_run(trained["third"].run_id)
    assert run.data.tags["promotion_decision"] == "pinned"
    assert run.data.tags["promotion_reason"] == outcome.reason
    assert "test_pr_auc" in run.data.metrics
    assert version_tags(tracking_uri, third)["promotion_decision"] == "pinned"
    # A retry of the night changes nothing either.
    assert promote(trained, "third", split, tracking_uri).decision == "pinned"
    assert champion(tracking_uri) == first


def test_release_lets_the_nightly_promote_again(
    tracking_uri: str,
    split: Split,
    trained: dict[str, CandidateResult],
    env: None,
    capsys: pytest.CaptureFixture,
) -> None:
    first, third = trained["first"].model_version, trained["third"].model_version

    out = run_cli(["model", "release", "--by", "oncall"], capsys)

    assert out["released"] is True and out["champion"] == first
    assert champion_alias.champion_pin(tracking_uri) is None
    assert champion(tracking_uri) == first  # release alone moves nothing
    outcome = promote(trained, "third", split, tracking_uri)
    assert (outcome.decision, outcome.champion_before) == ("promoted", first)
    assert champion(tracking_uri) == third
    assert champion_alias.champion_history(tracking_uri) == [first, third]


def test_a_rolled_back_version_is_never_promoted_again(
    tracking_uri: str, split: Split, trained: dict[str, CandidateResult]
) -> None:
    second, third = trained["second"].model_version, trained["third"].model_version

    outcome = promote(trained, "second", split, tracking_uri)

    assert outcome.decision == "rejected"
    assert f"version {second} was rolled back" in outcome.reason
    assert "scores drifted" in outcome.reason
    assert champion(tracking_uri) == third


def test_rollback_walks_back_and_stops_at_the_first_champion(
    tracking_uri: str,
    split: Split,
    trained: dict[str, CandidateResult],
    env: None,
    capsys: pytest.CaptureFixture,
) -> None:
    first, third = trained["first"].model_version, trained["third"].model_version

    out = run_cli(["model", "rollback", "--reason", "bad night"], capsys)
    assert (out["champion"], out["rolled_back_from"]) == (first, third)

    with pytest.raises(SystemExit, match=f"version {first} is the first champion on record"):
        cli.main(["model", "rollback", "--reason", "still bad"])
    assert champion(tracking_uri) == first
    assert champion_alias.champion_pin(tracking_uri).version == first


def test_history_is_rebuilt_from_promotion_tags_when_missing(
    tracking_uri: str, trained: dict[str, CandidateResult]
) -> None:
    client = model_registry.client(tracking_uri)
    recorded = champion_alias.champion_history(tracking_uri)
    client.delete_registered_model_tag(model_registry.MODEL_NAME, champion_alias.HISTORY_TAG)

    # Versions rolled back since their promotion (second, third) are left out.
    assert (
        champion_alias.champion_history(tracking_uri)
        == recorded
        == [trained["first"].model_version]
    )
