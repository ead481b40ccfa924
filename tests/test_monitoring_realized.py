"""Realized performance on labels as they arrive: which scored days are pooled, what the pool is
compared with (the version's test metrics on matured labels, or at the pool's label coverage),
and a degraded champion caught before and once labels mature.

Synthetic scored days: each holds 400 transactions and 8 frauds; a fraud scores high (the model
ranks it), except on the degraded days where a new fraud pattern scores like normal traffic.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from mlpipeline.monitoring.conf import MonitoringConf, RealizedConf
from mlpipeline.monitoring.realized import PENDING, Pool, choose_days, measured, realized_rows

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


def _pool(frame: pd.DataFrame) -> Pool:
    """The pool `pooled_scores` reads from the score table, chosen from in-memory rows."""
    days = choose_days(frame.groupby("dt")["is_fraud"].sum(), RUN_DAY, MATURITY, CONF)
    return Pool.of(days, frame[frame["dt"].isin(days)], RUN_DAY, MATURITY)


def _test_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """What evaluation logged for the version: its metrics on healthy rows (or what
    `coverage_test_metrics` re-measures at a coverage)."""
    values = measured(frame)
    return {
        "test_roc_auc": values["roc_auc"],
        "test_pr_auc": values["pr_auc"],
        "test_at_threshold_recall": values["recall"],
        "test_at_threshold_precision": values["precision"],
    }


def _rows(frame: pd.DataFrame, expected: dict[str, float] | None) -> dict[str, dict]:
    levels = MonitoringConf.load().checks["realized_performance"]
    floors = {"roc_auc": 0.7, "pr_auc": 0.05}
    rows = realized_rows(_pool(frame), expected, floors, levels, CONF)
    return {row["feature_or_metric"]: row for row in rows}


HEALTHY = _scored(range(0, 60))
MATURED_TEST = _test_metrics(_pool(HEALTHY).rows)


def test_the_pool_is_the_newest_matured_days_holding_enough_frauds() -> None:
    pool = _pool(HEALTHY)
    # 40 frauds at 8 a day: the five days from D-21 back to D-25.
    assert pool.days == [RUN_DAY - timedelta(days=n) for n in range(21, 26)]
    assert pool.frauds == 40 and pool.matured and pool.coverage == 1.0


def test_a_healthy_champion_is_ok_on_matured_labels() -> None:
    rows = _rows(HEALTHY, MATURED_TEST)
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
    test_metrics = MATURED_TEST
    # The pattern began 30 days ago: the matured pool (D-21..D-25) is all degraded days.
    degraded = _scored(range(0, 60), degraded_back=set(range(0, 31)))
    rows = _rows(degraded, test_metrics)
    assert rows["roc_auc"]["status"] == "failed" and rows["roc_auc"]["drifted"]
    assert rows["recall"]["status"] == "failed" and rows["recall"]["value"] == 0.0
    assert rows["roc_auc_floor"]["status"] == "failed"
    assert rows["roc_auc"]["threshold"] == pytest.approx(test_metrics["test_roc_auc"])


YOUNG = range(0, 20)  # the version is 20 days old: no day of its has matured labels


def test_before_maturity_a_degraded_version_fails_against_its_test_at_that_coverage() -> None:
    """All 20 days degraded; the pool is the newest days at least 7 days old, on partial labels,
    graded against the test metrics re-measured at the same label age (here the healthy rows
    themselves: on the synthetic days every label is known by then)."""
    young = _scored(YOUNG, degraded_back=set(YOUNG))
    rows = _rows(young, _test_metrics(_scored(YOUNG)))
    assert rows["label_coverage"]["status"] == PENDING
    assert rows["label_coverage"]["value"] == pytest.approx(7 / MATURITY)
    assert rows["roc_auc"]["status"] == "failed" and rows["roc_auc"]["drifted"]
    assert rows["recall"]["status"] == "failed" and rows["recall"]["value"] == 0.0
    assert "label age 7d (33% coverage)" in rows["roc_auc"]["method"]
    assert "roc_auc_floor" not in rows, "floors are judged on matured labels only"


def test_before_maturity_a_healthy_version_is_ok_at_that_coverage() -> None:
    young = _scored(YOUNG)
    rows = _rows(young, _test_metrics(young))
    assert {rows[m]["status"] for m in ("roc_auc", "pr_auc", "recall", "precision")} == {"ok"}
    assert rows["label_coverage"]["status"] == PENDING
    assert "roc_auc_floor" not in rows


def test_a_smaller_drop_at_that_coverage_warns() -> None:
    """The pool's precision 10 % below the test rows' at its label age: a warning (5 to 15 %)."""
    young = _scored(YOUNG)
    precision = measured(_pool(young).rows)["precision"]
    expected = _test_metrics(young) | {"test_at_threshold_precision": precision / 0.9}
    rows = _rows(young, expected)
    assert rows["precision"]["status"] == "warning" and rows["precision"]["drifted"]
    assert rows["precision"]["method"].startswith("drop 10.0% from")


def test_without_a_test_fraud_known_at_that_age_the_measure_is_pending() -> None:
    rows = _rows(_scored(YOUNG, degraded_back=set(YOUNG)), None)
    assert {rows[m]["status"] for m in ("roc_auc", "pr_auc", "recall", "precision")} == {PENDING}
    assert rows["roc_auc"]["threshold"] is None
    assert "no test fraud known at label age 7d" in rows["roc_auc"]["method"]


def test_too_few_frauds_measure_nothing() -> None:
    young = _scored(range(0, 10))
    rows = _rows(young, MATURED_TEST)
    assert set(rows) == {"frauds", "label_coverage"}
    assert rows["frauds"]["value"] == 8 * 3 and rows["frauds"]["status"] == PENDING
