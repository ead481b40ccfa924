"""Realized performance on labels as they arrive: which scored days are pooled, when the pool is
compared with the version's test metrics, and a degraded champion caught once labels mature.

Synthetic scored days: each holds 400 transactions and 8 frauds; a fraud scores high (the model
ranks it), except on the degraded days where a new fraud pattern scores like normal traffic.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from mlpipeline.monitoring.conf import MonitoringConf, RealizedConf
from mlpipeline.monitoring.realized import PENDING, choose_pool, measured, realized_rows

pytestmark = pytest.mark.unit

RUN_DAY = date(2026, 6, 30)
MATURITY = 21
CONF = RealizedConf(min_frauds=40, min_label_age_days=7, lookback_days=120)
ROWS, FRAUDS = 400, 8
THRESHOLD = 0.5


def _day(day: date, *, degraded: bool, rng: np.random.Generator) -> pd.DataFrame:
    is_fraud = np.zeros(ROWS, dtype=int)
    is_fraud[:FRAUDS] = 1
    scores = rng.uniform(0.0, 0.45, ROWS)
    if not degraded:
        scores[:FRAUDS] = rng.uniform(0.55, 1.0, FRAUDS)
        scores[FRAUDS : 2 * FRAUDS] = rng.uniform(0.5, 0.9, FRAUDS)  # some false alarms
    return pd.DataFrame(
        {
            "dt": day,
            "transaction_id": [f"{day}-{i}" for i in range(ROWS)],
            "score": scores,
            "decision": scores >= THRESHOLD,
            "is_fraud": is_fraud,
        }
    )


def _scored(days_back: range, degraded_back: set[int] = frozenset()) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.concat(
        [_day(RUN_DAY - timedelta(days=n), degraded=n in degraded_back, rng=rng) for n in days_back]
    )


def _test_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """What evaluation logged for the version: its metrics on healthy, matured rows."""
    pool = choose_pool(frame, RUN_DAY, MATURITY, CONF)
    values = measured(pool)
    return {
        "test_roc_auc": values["roc_auc"],
        "test_pr_auc": values["pr_auc"],
        "test_at_threshold_recall": values["recall"],
        "test_at_threshold_precision": values["precision"],
    }


def _rows(frame: pd.DataFrame, test_metrics: dict[str, float]) -> dict[str, dict]:
    pool = choose_pool(frame, RUN_DAY, MATURITY, CONF)
    levels = MonitoringConf.load().checks["realized_performance"]
    floors = {"roc_auc": 0.7, "pr_auc": 0.05}
    rows = realized_rows(pool, test_metrics, floors, levels, CONF)
    return {row["feature_or_metric"]: row for row in rows}


HEALTHY = _scored(range(0, 60))


def test_the_pool_is_the_newest_matured_days_holding_enough_frauds() -> None:
    pool = choose_pool(HEALTHY, RUN_DAY, MATURITY, CONF)
    # 40 frauds at 8 a day: the five days from D-21 back to D-25.
    assert pool.days == [RUN_DAY - timedelta(days=n) for n in range(21, 26)]
    assert pool.frauds == 40 and pool.matured and pool.coverage == 1.0


def test_a_healthy_champion_is_ok_on_matured_labels() -> None:
    rows = _rows(HEALTHY, _test_metrics(HEALTHY))
    assert {name: row["status"] for name, row in rows.items()} == {
        "frauds": "ok",
        "label_coverage": "ok",
        "roc_auc": "ok",
        "pr_auc": "ok",
        "recall": "ok",
        "precision": "ok",
        "roc_auc_floor": "ok",
        "pr_auc_floor": "ok",
    }


def test_a_new_fraud_pattern_fails_the_check_once_its_labels_matured() -> None:
    test_metrics = _test_metrics(HEALTHY)
    # The pattern began 30 days ago: the matured pool (D-21..D-25) is all degraded days.
    degraded = _scored(range(0, 60), degraded_back=set(range(0, 31)))
    rows = _rows(degraded, test_metrics)
    assert rows["roc_auc"]["status"] == "failed" and rows["roc_auc"]["drifted"]
    assert rows["recall"]["status"] == "failed" and rows["recall"]["value"] == 0.0
    assert rows["roc_auc_floor"]["status"] == "failed"
    assert rows["roc_auc"]["threshold"] == pytest.approx(test_metrics["test_roc_auc"])


def test_before_maturity_the_measure_is_pending_not_graded() -> None:
    test_metrics = _test_metrics(HEALTHY)
    # Only the last 20 days were scored by the version (it is 20 days old), and all degraded:
    # the pool is the newest days at least 7 days old, with partial labels.
    young = _scored(range(0, 20), degraded_back=set(range(0, 20)))
    rows = _rows(young, test_metrics)
    assert rows["label_coverage"]["status"] == PENDING
    assert rows["label_coverage"]["value"] == pytest.approx(7 / MATURITY)
    assert {rows[m]["status"] for m in ("roc_auc", "pr_auc", "recall", "precision")} == {PENDING}
    assert "roc_auc_floor" not in rows, "floors are judged on matured labels only"


def test_too_few_frauds_measure_nothing() -> None:
    young = _scored(range(0, 10))
    rows = _rows(young, _test_metrics(HEALTHY))
    assert set(rows) == {"frauds", "label_coverage"}
    assert rows["frauds"]["value"] == 8 * 3 and rows["frauds"]["status"] == PENDING
