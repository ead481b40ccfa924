"""Evaluate the trained candidates, choose decision thresholds, and promote a champion.

Every candidate is scored from its registered version (the artifact serving will load, not an
in-memory copy) on the split's validation and test rows. The decision threshold is chosen on
validation by a configured rule and stored on the model version. The best candidate by a
validation metric replaces the champion only when it beats it on the same test rows by a
margin, meets absolute floors and beats trivial baselines; a model trained on an older cutoff
never replaces a champion trained on a newer one, and a version once rolled back is never
promoted again automatically. While a rollback pins the champion (`mlpipeline model rollback`)
evaluation still runs and records what it would have decided, but nothing is promoted. Every
decision and its reason are recorded as tags on the run and the model version, and in the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from mlpipeline.core.config import candidates_path
from mlpipeline.training import model_registry
from mlpipeline.training.model_features import (
    FeatureColumns,
    FeatureSpecLike,
    model_frame,
    select_feature_columns,
)
from mlpipeline.training.split import Split

if TYPE_CHECKING:
    from mlpipeline.training.train import CandidateResult

log = logging.getLogger(__name__)

THRESHOLD_RULES = ("target_fpr", "max_f1")
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")
RANKING_METRICS = ("roc_auc", "pr_auc")


def recall_metric(fpr: float) -> str:
    """Name of the recall-at-fixed-FPR metric, e.g. recall_at_1pct_fpr for 0.01."""
    return f"recall_at_{fpr * 100:g}pct_fpr".replace(".", "_")


@dataclass(frozen=True)
class EvaluationRules:
    """How candidates are measured, thresholded and promoted (conf/candidates.yaml)."""

    recall_at_fpr: float = 0.01
    threshold_rule: str = "target_fpr"
    target_fpr: float = 0.01
    selection_metric: str = "pr_auc"
    comparison_metric: str = "pr_auc"
    min_improvement: float = 0.005
    floors: dict[str, float] = field(default_factory=dict)
    beat_baselines: bool = True

    def __post_init__(self) -> None:
        known = {*METRICS, recall_metric(self.recall_at_fpr)}
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(
                f"threshold_rule {self.threshold_rule!r} is unknown; use one of {THRESHOLD_RULES}"
            )
        named = [self.selection_metric, self.comparison_metric, *self.floors]
        unknown = [m for m in named if m not in known]
        if unknown:
            raise ValueError(
                f"metrics {unknown} in the promotion rules are unknown; use {sorted(known)}"
            )
        lower_is_better = {"log_loss", "brier"} & {self.selection_metric, self.comparison_metric}
        if lower_is_better:
            raise ValueError(
                f"{sorted(lower_is_better)} cannot rank models here (lower is better); "
                "select and compare on roc_auc, pr_auc or recall"
            )

    @classmethod
    def from_conf(cls, path: Path | None = None) -> EvaluationRules:
        conf = yaml.safe_load(Path(path or candidates_path()).read_text())
        evaluation, promotion = conf.get("evaluation", {}), conf.get("promotion", {})
        return cls(
            recall_at_fpr=float(evaluation.get("recall_at_fpr", 0.01)),
            threshold_rule=evaluation.get("threshold_rule", "target_fpr"),
            target_fpr=float(evaluation.get("target_fpr", 0.01)),
            selection_metric=promotion.get("selection_metric", "pr_auc"),
            comparison_metric=promotion.get("comparison_metric", "pr_auc"),
            min_improvement=float(promotion.get("min_improvement", 0.005)),
            floors={k: float(v) for k, v in (promotion.get("floors") or {}).items()},
            beat_baselines=bool(promotion.get("beat_baselines", True)),
        )


def classification_metrics(
    y: np.ndarray | pd.Series, proba: np.ndarray, *, recall_at_fpr: float = 0.01
) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier and recall at a fixed FPR."""
    y = np.asarray(y, dtype=int)
    proba = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"cannot evaluate on {len(y)} rows with a single class ({int(y.sum())} positives); "
            "the split part needs frauds and non-frauds: use more history or other ratios"
        )
    fpr, tpr, _ = roc_curve(y, proba)
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "log_loss": float(log_loss(y, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y, proba)),
        recall_metric(recall_at_fpr): float(tpr[fpr <= recall_at_fpr].max()),
    }


def choose_threshold(
    y: np.ndarray | pd.Series, proba: np.ndarray, *, rule: str, target_fpr: float = 0.01
) -> float:
    """Decision threshold (flag when score >= threshold) chosen on validation rows by `rule`."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    if rule == "target_fpr":
        fpr, tpr, thresholds = roc_curve(y, proba)
        # fpr is non-decreasing: the last point within budget has the highest recall.
        index = int(np.flatnonzero(fpr <= target_fpr)[-1])
        if not np.isfinite(thresholds[index]):
            log.warning("no score keeps the FPR within %s; threshold set to 1.0", target_fpr)
            return 1.0
        return float(thresholds[index])
    if rule == "max_f1":
        precision, recall, thresholds = precision_recall_curve(y, proba)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    raise ValueError(f"threshold rule {rule!r} is unknown; use one of {THRESHOLD_RULES}")


def threshold_report(
    y: np.ndarray | pd.Series, proba: np.ndarray, threshold: float
) -> dict[str, float]:
    """Confusion counts and rates when flagging scores >= threshold."""
    y = np.asarray(y, dtype=int)
    flagged = np.asarray(proba) >= threshold
    tn, fp, fn, tp = confusion_matrix(y, flagged, labels=[0, 1]).ravel()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
        "precision": float(precision),
        "recall": float(recall),
        "fpr": float(fp / (fp + tn)) if fp + tn else 0.0,
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
    }


def baselines(
    split: Split, columns: FeatureColumns, *, recall_at_fpr: float = 0.01
) -> dict[str, Any]:
    """Test metrics of a majority-class model and of the best single numeric feature.

    The single feature (and its direction) is picked on validation, then measured on test, like
    the candidates; a model that cannot beat sorting by one column is not worth serving.
    """
    label = split.label
    y_val, y_test = split.validation[label].to_numpy(), split.test[label].to_numpy()
    prevalence = float(split.train[label].mean())
    majority = classification_metrics(
        y_test, np.full(len(y_test), prevalence), recall_at_fpr=recall_at_fpr
    )
    kw = {"numeric": columns.numeric, "categorical": (), "request": columns.request}
    train, val, test = (model_frame(split.part(p), **kw) for p in ("train", "validation", "test"))
    best: tuple[float, str, int] | None = None
    for column in columns.model_numeric:
        fill = train[column].median()
        scores = val[column].fillna(fill).to_numpy()
        if np.isnan(fill) or np.ptp(scores) == 0:
            continue
        direction = 1 if roc_auc_score(y_val, scores) >= 0.5 else -1
        score = float(average_precision_score(y_val, direction * scores))
        if best is None or score > best[0]:
            best = (score, column, direction)
    single: dict[str, Any] = {"name": None}
    if best is not None:
        _, column, direction = best
        scores = direction * test[column].fillna(train[column].median()).to_numpy()
        # A raw column is a ranking, not a probability: only ranking metrics apply to it.
        ranks = pd.Series(scores).rank(pct=True).to_numpy()
        metrics = classification_metrics(y_test, ranks, recall_at_fpr=recall_at_fpr)
        ranking = (*RANKING_METRICS, recall_metric(recall_at_fpr))
        single = {"name": column, "direction": direction, **{k: metrics[k] for k in ranking}}
    return {"majority": majority, "best_feature": single}


@dataclass
class CandidateEvaluation:
    name: str
    version: str
    run_id: str
    model_id: str
    training_cutoff: date
    threshold: float
    validation: dict[str, float]
    test: dict[str, float]
    test_at_threshold: dict[str, float]


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


def _scores(model: Any, frame: pd.DataFrame, label: str) -> np.ndarray:
    return model.predict_proba(frame.drop(columns=[label]))[:, 1]


def _curves_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Figure:
    figure = Figure(figsize=(10, 4.5))
    roc_axes, pr_axes = figure.subplots(1, 2)
    for part, (y, proba) in curves.items():
        fpr, tpr, _ = roc_curve(y, proba)
        roc_axes.plot(fpr, tpr, label=f"{part} (AUC {roc_auc_score(y, proba):.3f})")
        precision, recall, _ = precision_recall_curve(y, proba)
        pr_axes.plot(
            recall, precision, label=f"{part} (AP {average_precision_score(y, proba):.3f})"
        )
        pr_axes.axhline(float(np.mean(y)), linestyle=":", linewidth=0.8)
    roc_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    roc_axes.set(xlabel="false-positive rate", ylabel="recall", title="ROC")
    pr_axes.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for axes in (roc_axes, pr_axes):
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(title)
    return figure


def _confusion_figure(report: dict[str, float], threshold: float, title: str) -> Figure:
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    cells = np.array([[report["tn"], report["fp"]], [report["fn"], report["tp"]]])
    axes.imshow(cells, cmap="Blues")
    for (row, col), value in np.ndenumerate(cells):
        colour = "white" if value > cells.max() / 2 else "black"
        axes.text(col, row, f"{value:,}", ha="center", va="center", color=colour)
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["legit", "flagged"],
        yticklabels=["legit", "fraud"],
        xlabel="prediction",
        ylabel="label",
        title=f"{title}\ntest, threshold {threshold:.4f}",
    )
    return figure


def evaluate_candidate(
    result: CandidateResult, split: Split, *, rules: EvaluationRules, tracking_uri: str
) -> CandidateEvaluation:
    """Score a registered candidate on validation and test, pick its threshold, log it all."""
    started = time.monotonic()
    model = model_registry.load_version(tracking_uri, result.model_version)
    label = split.label
    y_val, y_test = split.validation[label].to_numpy(), split.test[label].to_numpy()
    p_val, p_test = _scores(model, split.validation, label), _scores(model, split.test, label)
    threshold = choose_threshold(
        y_val, p_val, rule=rules.threshold_rule, target_fpr=rules.target_fpr
    )
    evaluation = CandidateEvaluation(
        name=result.name,
        version=result.model_version,
        run_id=result.run_id,
        model_id=result.model_id,
        training_cutoff=result.training_cutoff,
        threshold=threshold,
        validation=classification_metrics(y_val, p_val, recall_at_fpr=rules.recall_at_fpr),
        test=classification_metrics(y_test, p_test, recall_at_fpr=rules.recall_at_fpr),
        test_at_threshold=threshold_report(y_test, p_test, threshold),
    )
    client = model_registry.client(tracking_uri)
    metrics = {f"test_{k}": v for k, v in evaluation.test.items()}
    metrics |= {f"test_at_threshold_{k}": float(v) for k, v in evaluation.test_at_threshold.items()}
    metrics["decision_threshold"] = threshold
    with model_registry.tracking(tracking_uri) as mlflow:
        mlflow.log_metrics(metrics, run_id=result.run_id, model_id=result.model_id)
    client.set_tag(result.run_id, model_registry.THRESHOLD_TAG, repr(threshold))
    client.set_tag(result.run_id, "threshold_rule", _rule_text(rules))
    client.set_model_version_tag(
        model_registry.MODEL_NAME,
        result.model_version,
        model_registry.THRESHOLD_TAG,
        repr(threshold),
    )
    client.set_model_version_tag(
        model_registry.MODEL_NAME, result.model_version, "threshold_rule", _rule_text(rules)
    )
    title = f"{result.name} v{result.model_version}"
    client.log_figure(
        result.run_id,
        _curves_figure({"validation": (y_val, p_val), "test": (y_test, p_test)}, title),
        "evaluation/roc_pr_curves.png",
    )
    client.log_figure(
        result.run_id,
        _confusion_figure(evaluation.test_at_threshold, threshold, title),
        "evaluation/confusion_matrix.png",
    )
    log.info(
        "evaluated %s v%s in %.1fs: threshold %.4f, validation %s, test %s",
        result.name,
        result.model_version,
        time.monotonic() - started,
        threshold,
        _fmt(evaluation.validation),
        _fmt(evaluation.test),
    )
    return evaluation


def _rule_text(rules: EvaluationRules) -> str:
    if rules.threshold_rule == "target_fpr":
        return f"target_fpr<={rules.target_fpr:g} on validation"
    return "max_f1 on validation"


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())


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
        proba = _scores(model, split.test, split.label)
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
        if model_registry.promote(tracking_uri, best.version):
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
    pin = model_registry.champion_pin(tracking_uri)
    if pin is None or decision in {"already_champion", "pinned"}:
        return decision, reason
    return "pinned", f"{pin.describe()}. Without the pin: {decision}: {reason}"


def _metric_entities(metrics: dict[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, value, now, 0) for key, value in metrics.items()]
