"""Evaluate one trained candidate: its metrics, decision threshold and plots, on the run.

Every candidate is scored from its registered version (the artifact serving will load, not an
in-memory copy) on the split's validation and test rows. The decision threshold is chosen on
validation by a configured rule and stored on the model version. Choosing among candidates is
`promotion`'s job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from mlpipeline.core.config import candidates_path
from mlpipeline.training import model_registry
from mlpipeline.training.metrics import (
    METRICS,
    THRESHOLD_RULES,
    choose_threshold,
    classification_metrics,
    recall_metric,
    threshold_report,
)
from mlpipeline.training.split import Split
from mlpipeline.training.train import CandidateResult

log = logging.getLogger(__name__)

# The version's scores on the validation rows, kept on its run: monitoring compares each scored
# day with them (prediction drift).
VALIDATION_SCORES = "evaluation/validation_scores.json"


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


def model_scores(model: Any, frame: pd.DataFrame, label: str) -> np.ndarray:
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
    p_val, p_test = (
        model_scores(model, split.validation, label),
        model_scores(model, split.test, label),
    )
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
    client.set_tag(result.run_id, "threshold_rule", rule_text(rules))
    client.set_model_version_tag(
        model_registry.MODEL_NAME,
        result.model_version,
        model_registry.THRESHOLD_TAG,
        repr(threshold),
    )
    client.set_model_version_tag(
        model_registry.MODEL_NAME, result.model_version, "threshold_rule", rule_text(rules)
    )
    client.log_dict(result.run_id, {"validation": p_val.tolist()}, VALIDATION_SCORES)
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
        format_metrics(evaluation.validation),
        format_metrics(evaluation.test),
    )
    return evaluation


def validation_scores(tracking_uri: str, run_id: str) -> np.ndarray | None:
    """The scores evaluation kept for the run's validation rows; None for a version evaluated
    before they were kept (or not by the pipeline)."""
    from mlflow.exceptions import MlflowException

    with model_registry.tracking(tracking_uri) as mlflow:
        try:
            kept = mlflow.artifacts.load_dict(f"runs:/{run_id}/{VALIDATION_SCORES}")
        except (MlflowException, OSError):
            return None
    return np.asarray(kept["validation"], dtype=float)


def rule_text(rules: EvaluationRules) -> str:
    if rules.threshold_rule == "target_fpr":
        return f"target_fpr<={rules.target_fpr:g} on validation"
    return "max_f1 on validation"


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
