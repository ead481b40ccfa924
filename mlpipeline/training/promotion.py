"""Promote a champion among the evaluated candidates, by rules a reviewer can read.

The best candidate by a validation metric replaces the champion only when it beats it on the
same test rows by a margin, meets absolute floors and beats trivial baselines; a model trained on
an older cutoff never replaces a champion trained on a newer one, and a version once rolled back
is never promoted again automatically. While a rollback pins the champion (`mlpipeline model
rollback`) evaluation still runs and records what it would have decided, but nothing is
promoted. Every decision and its reason are recorded as tags on the run and the model version,
and in the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from mlpipeline.training import champion_alias, model_registry
from mlpipeline.training.evaluate import (
    CandidateEvaluation,
    EvaluationRules,
    evaluate_candidate,
    model_scores,
)
from mlpipeline.training.metrics import (
    baselines,
    classification_metrics,
)
from mlpipeline.training.model_features import (
    FeatureSpecLike,
    select_feature_columns,
)
from mlpipeline.training.split import Split
from mlpipeline.training.train import CandidateResult

log = logging.getLogger(__name__)


@dataclass
class PromotionOutcome:
    decision: str  # promoted | kept_champion | rejected | already_champion | pinned
    reason: str
    best: str
    best_version: str
    champion_before: str | None
    champion_version: str | None
    challenger_version: str | None
    baselines: dict[str, Any]
    evaluations: list[CandidateEvaluation]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for evaluation in out["evaluations"]:
            evaluation["training_cutoff"] = evaluation["training_cutoff"].isoformat()
        return out


def _gate_failures(
    best: CandidateEvaluation, base: dict[str, Any], rules: EvaluationRules
) -> list[str]:
    failures = [
        f"test {metric} {best.test[metric]:.4f} is below the floor {floor:.4f}"
        for metric, floor in rules.floors.items()
        if best.test[metric] < floor
    ]
    if rules.beat_baselines:
        metric = rules.comparison_metric
        for which, metrics in (
            ("majority-class", base["majority"]),
            ("best single feature", base["best_feature"]),
        ):
            if metric in metrics and best.test[metric] <= metrics[metric]:
                name = f" ({metrics['name']})" if metrics.get("name") else ""
                failures.append(
                    f"test {metric} {best.test[metric]:.4f} does not beat the {which} baseline"
                    f"{name} ({metrics[metric]:.4f})"
                )
    return failures


def _champion_test_score(
    champion: model_registry.ChampionRef, split: Split, metric: str, rules: EvaluationRules
) -> tuple[float | None, str]:
    """The champion's metric on the candidates' test rows, or None and why it cannot score them."""
    try:
        model = model_registry.load_model(champion)
        proba = model_scores(model, split.test, split.label)
    except (KeyError, ValueError) as exc:
        return None, str(exc)
    y_test = split.test[split.label].to_numpy()
    return classification_metrics(y_test, proba, recall_at_fpr=rules.recall_at_fpr)[metric], ""


def decide(
    best: CandidateEvaluation,
    champion: model_registry.ChampionRef | None,
    split: Split,
    base: dict[str, Any],
    rules: EvaluationRules,
    *,
    rolled_back: str | None = None,
) -> tuple[str, str]:
    """Whether the best candidate becomes champion: (decision, reason).

    `rolled_back` describes an earlier rollback of the best candidate's version, if any.
    """
    if champion is not None and champion.version == best.version:
        return "already_champion", f"version {best.version} is already the champion"
    if rolled_back:
        return "rejected", (
            f"version {best.version} was rolled back ({rolled_back}); a rolled-back version is "
            "never promoted again automatically"
        )
    if champion is not None and best.training_cutoff < champion.training_cutoff:
        return "kept_champion", (
            f"trained on cutoff {best.training_cutoff}, older than the champion's "
            f"(version {champion.version}, cutoff {champion.training_cutoff}); an older model "
            "never replaces a newer one"
        )
    failures = _gate_failures(best, base, rules)
    if failures:
        return "rejected", "; ".join(failures)
    if champion is None:
        return "promoted", "no champion yet; the best candidate meets the floors and baselines"
    metric = rules.comparison_metric
    champion_score, error = _champion_test_score(champion, split, metric, rules)
    if champion_score is None:
        log.warning("champion version %s cannot score the test rows: %s", champion.version, error)
        return "promoted", (
            f"champion version {champion.version} cannot score the current rows ({error}); "
            "the candidate meets the floors and baselines"
        )
    gain = best.test[metric] - champion_score
    versus = (
        f"test {metric} {best.test[metric]:.4f} vs champion version {champion.version} "
        f"{champion_score:.4f} on the same {len(split.test)} rows (gain {gain:+.4f}, "
        f"required {rules.min_improvement:+.4f})"
    )
    if gain >= rules.min_improvement:
        return "promoted", versus
    return "kept_champion", versus


def evaluate_and_promote(
    results: list[CandidateResult],
    split: Split,
    *,
    feature_columns: list[FeatureSpecLike],
    tracking_uri: str,
    rules: EvaluationRules | None = None,
) -> PromotionOutcome:
    """Evaluate every candidate, then move `champion` / `challenger` aliases as the rules say."""
    rules = rules or EvaluationRules.from_conf()
    if not results:
        raise ValueError(
            "no trained candidates to evaluate; every training task failed or was skipped"
        )
    foreign = [r.name for r in results if r.split_id != split.split_id]
    if foreign:
        raise ValueError(
            f"candidates {foreign} were trained on another split than {split.split_id}; "
            "evaluate candidates on the split they were trained on"
        )
    evaluations = [
        evaluate_candidate(r, split, rules=rules, tracking_uri=tracking_uri) for r in results
    ]
    base = baselines(
        split, select_feature_columns(feature_columns), recall_at_fpr=rules.recall_at_fpr
    )
    ranked = sorted(evaluations, key=lambda e: e.validation[rules.selection_metric], reverse=True)
    best = ranked[0]
    champion = model_registry.resolve_champion(tracking_uri)
    client = model_registry.client(tracking_uri)
    name = model_registry.MODEL_NAME
    decision, reason = decide(
        best, champion, split, base, rules, rolled_back=_rollback_record(client, best.version)
    )
    decision, reason = _unless_pinned(tracking_uri, decision, reason)
    champion_version = champion.version if champion else None
    if decision == "promoted":
        if champion_alias.promote(tracking_uri, best.version):
            champion_version = best.version
        else:
            # A rollback pinned the champion while this evaluation ran.
            decision, reason = _unless_pinned(tracking_uri, decision, reason)
    log_level = logging.INFO if decision in {"promoted", "already_champion"} else logging.WARNING
    log.log(log_level, "promotion of %s v%s: %s (%s)", best.name, best.version, decision, reason)
    challenger = next((e for e in ranked if e.version != champion_version), None)
    if challenger is not None:
        client.set_registered_model_alias(name, model_registry.CHALLENGER_ALIAS, challenger.version)

    baseline_metrics = {
        f"baseline_{which}_test_{metric}": float(value)
        for which in ("majority", "best_feature")
        for metric, value in base[which].items()
        if metric not in {"name", "direction"}
    }
    for evaluation in evaluations:
        if champion is not None and evaluation.version == champion.version:
            # Keep the record of why the sitting champion was promoted.
            client.log_batch(evaluation.run_id, metrics=_metric_entities(baseline_metrics))
            continue
        if evaluation is best:
            tags = {"promotion_decision": decision, "promotion_reason": reason}
        else:
            tags = {
                "promotion_decision": "not_selected",
                "promotion_reason": (
                    f"validation {rules.selection_metric} "
                    f"{evaluation.validation[rules.selection_metric]:.4f} below {best.name} "
                    f"v{best.version} ({best.validation[rules.selection_metric]:.4f})"
                ),
            }
        tags["baseline_best_feature"] = str(base["best_feature"]["name"])
        for key, value in tags.items():
            client.set_tag(evaluation.run_id, key, value)
            client.set_model_version_tag(name, evaluation.version, key, value)
        client.log_batch(evaluation.run_id, metrics=_metric_entities(baseline_metrics))
    return PromotionOutcome(
        decision=decision,
        reason=reason,
        best=best.name,
        best_version=best.version,
        champion_before=champion.version if champion else None,
        champion_version=champion_version,
        challenger_version=challenger.version if challenger else None,
        baselines=base,
        evaluations=evaluations,
    )


def _rollback_record(client: Any, version: str) -> str | None:
    """How and why a version was rolled back, from its tags; None if it never was."""
    tags = client.get_model_version(model_registry.MODEL_NAME, version).tags
    if "rolled_back_at" not in tags:
        return None
    return (
        f"at {tags['rolled_back_at']} by {tags.get('rolled_back_by', 'unknown')}: "
        f"{tags.get('rolled_back_reason', 'no reason given')}"
    )


def _unless_pinned(tracking_uri: str, decision: str, reason: str) -> tuple[str, str]:
    """While a rollback pins the champion nothing is promoted: say so, and what the rules said."""
    pin = champion_alias.champion_pin(tracking_uri)
    if pin is None or decision in {"already_champion", "pinned"}:
        return decision, reason
    return "pinned", f"{pin.describe()}. Without the pin: {decision}: {reason}"


def _metric_entities(metrics: dict[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, value, now, 0) for key, value in metrics.items()]
