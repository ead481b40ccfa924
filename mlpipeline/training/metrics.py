"""Classification metrics, decision thresholds and the trivial baselines a model must beat.

Shared by training (metrics on the candidate's own parts) and evaluation (on the registered
version): one definition of every number the promotion rules compare.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from mlpipeline.training.model_features import FeatureColumns
from mlpipeline.training.request_features import model_frame
from mlpipeline.training.split import Split

log = logging.getLogger(__name__)

THRESHOLD_RULES = ("target_fpr", "max_f1")
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")
RANKING_METRICS = ("roc_auc", "pr_auc")


def recall_metric(fpr: float) -> str:
    """Name of the recall-at-fixed-FPR metric, e.g. recall_at_1pct_fpr for 0.01."""
    return f"recall_at_{fpr * 100:g}pct_fpr".replace(".", "_")


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
