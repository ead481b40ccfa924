"""The day's checks as metric rows: input drift per feature plus its share, prediction drift.

A row is a dict of the metric table's columns without the day and version (the caller adds
those). A drifted feature is a `warning`; the check's status comes from its share of drifted
features (pipeline.yaml `monitoring.checks`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlpipeline.monitoring.conf import CheckThresholds, MonitoringConf
from mlpipeline.monitoring.drift_tests import column_drift, normed_wasserstein

Row = dict[str, Any]
INPUT_DRIFT, PREDICTION_DRIFT = "input_drift", "prediction_drift"
DRIFT_SHARE = "drift_share"


def input_drift_rows(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], conf: MonitoringConf
) -> list[Row]:
    rows: list[Row] = []
    for name, kind in kinds.items():
        thresholds = {**conf.drift_thresholds, **conf.feature_drift_thresholds.get(name, {})}
        result = column_drift(reference[name], current[name], kind, thresholds)
        rows.append(
            {
                "check": INPUT_DRIFT,
                "feature_or_metric": name,
                "method": result.method,
                "value": result.value,
                "threshold": result.threshold,
                "drifted": result.drifted,
                "status": "warning" if result.drifted else "ok",
            }
        )
    share = sum(row["drifted"] for row in rows) / len(rows) if rows else math.nan
    method = f"share of {len(kinds)} inputs drifted"
    rows.append(_graded(INPUT_DRIFT, DRIFT_SHARE, method, share, conf.checks["input_drift"]))
    return rows


def prediction_drift_rows(
    reference_scores: np.ndarray,
    scores: np.ndarray,
    decisions: np.ndarray,
    decision_threshold: float | None,
    conf: MonitoringConf,
) -> list[Row]:
    """The day's score distribution and share flagged against the validation scores'."""
    distance = normed_wasserstein(reference_scores, scores)
    rows = [_graded(PREDICTION_DRIFT, "score", "wasserstein", distance, conf.checks["score_drift"])]
    if decision_threshold is not None:
        expected = float(np.mean(reference_scores >= decision_threshold))
        observed = float(np.mean(decisions))
        method = f"|day {observed:.4f} / validation {expected:.4f} - 1|"
        change = _relative_change(observed, expected)
        rows.append(
            _graded(PREDICTION_DRIFT, "decision_rate", method, change, conf.checks["decision_rate"])
        )
    return rows


def _graded(check: str, metric: str, method: str, value: float, levels: CheckThresholds) -> Row:
    """A row whose status is graded by the check's warning / failure levels."""
    return {
        "check": check,
        "feature_or_metric": metric,
        "method": method,
        "value": value,
        "threshold": levels.warning,
        "drifted": value >= levels.warning,
        "status": levels.status(value),
    }


def relative_drop_row(
    check: str, metric: str, observed: float, expected: float | None, levels: CheckThresholds
) -> Row:
    """`observed` against the `expected` value it should keep, graded by its relative drop (a
    rise is no drop); without an expected value the row has no reference."""
    if expected is None:
        return {**no_reference_row(check, metric, "no expected value"), "value": observed}
    drop = max(0.0, 1 - observed / expected) if expected else 0.0
    return {
        "check": check,
        "feature_or_metric": metric,
        "method": f"drop {drop:.1%} from {expected:.4f}",
        "value": observed,
        "threshold": expected,
        "drifted": drop >= levels.warning,
        "status": levels.status(drop),
    }


def _relative_change(observed: float, expected: float) -> float:
    if expected == 0:
        return 0.0 if observed == 0 else math.inf
    return abs(observed / expected - 1)


def no_reference_row(check: str, metric: str, reason: str) -> Row:
    """A check that could not be computed; `reason` (the row's reference) says why."""
    return {
        "check": check,
        "feature_or_metric": metric,
        "method": None,
        "value": None,
        "threshold": None,
        "drifted": None,
        "status": "no_reference",
        "reference": reason,
    }


def no_reference_rows(reason: str) -> list[Row]:
    """Nothing to compare the day with: one row per check."""
    return [
        no_reference_row(INPUT_DRIFT, DRIFT_SHARE, reason),
        no_reference_row(PREDICTION_DRIFT, "score", reason),
    ]
