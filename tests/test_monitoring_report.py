"""The report page's trends from metric rows as `monitor_day` publishes them: serving skew (the
day's largest graded share, and unmatched requests) and realized performance measured on
immature labels drawn hollow."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mlpipeline.core.config import Settings
from mlpipeline.monitoring import metrics_table, report
from mlpipeline.monitoring.conf import MonitoringConf
from mlpipeline.warehouse.meta import utcnow

pytestmark = pytest.mark.unit

FIRST = date(2026, 3, 1)
DAYS = [FIRST + timedelta(days=n) for n in range(3)]
# Per run day: (check, metric, value, threshold, status); the last day logged no request.
ROWS = {
    DAYS[0]: [
        ("serving_skew", "amount", 0.0, 0.0001, "ok"),
        ("serving_skew", "score_diff", 0.002, 0.0001, "warning"),
        ("serving_skew", "decision_flips", 0.0, 0.0001, "ok"),
        ("serving_skew", "unmatched_requests", 0.05, None, "warning"),
        ("realized_performance", "label_coverage", 1 / 3, 1.0, "pending"),
        ("realized_performance", "roc_auc", 0.8, 0.82, "ok"),
    ],
    DAYS[1]: [
        ("serving_skew", "amount", 0.02, 0.0001, "failed"),
        ("serving_skew", "score_diff", 0.0, 0.0001, "ok"),
        ("serving_skew", "unmatched_requests", 0.0, None, "ok"),
        ("realized_performance", "label_coverage", 1.0, 1.0, "ok"),
        ("realized_performance", "roc_auc", 0.81, 0.83, "ok"),
    ],
    DAYS[2]: [
        ("input_drift", "drift_share", 0.0, 0.1, "ok"),
        ("serving_skew", "unmatched_requests", None, None, "no_reference"),
    ],
}


def _publish(settings: Settings) -> None:
    for day, rows in ROWS.items():
        table = metrics_table.metrics_table(
            [
                {
                    "run_day": day,
                    "scored_day": day,
                    "check": check,
                    "feature_or_metric": metric,
                    "method": "m",
                    "value": value,
                    "threshold": threshold,
                    "drifted": None,
                    "status": status,
                    "model_version": "3",
                    "reference": None,
                    "rows_current": None,
                    "rows_reference": None,
                    "computed_at": utcnow(),
                }
                for check, metric, value, threshold, status in rows
            ]
        )
        metrics_table.publish(settings, day, table)


def test_serving_skew_is_charted_per_run_day(settings: Settings) -> None:
    _publish(settings)
    found = report.load_report(settings, DAYS[-1])
    assert found is not None
    trends = {trend.title.split(":")[0]: trend for trend in found.trends}
    skew = trends["Serving skew"]
    # The day's worst graded row (feature, score or decision), not the unmatched share.
    assert skew.points == [(DAYS[0], 0.002, "warning"), (DAYS[1], 0.02, "failed")]
    levels = MonitoringConf.load().checks["serving_skew"]
    assert skew.levels == {"warning": levels.warning, "failure": levels.failure}
    unmatched = trends["Unmatched requests"]
    assert unmatched.points == [(DAYS[0], 0.05, "warning"), (DAYS[1], 0.0, "ok")]
    assert unmatched.levels == {}
    assert trends["Realized ROC AUC (hollow"].hollow == {DAYS[0]}

    page = report.render(found)
    assert "Serving skew: largest share" in page and "Unmatched requests" in page
    assert page.count("<svg") == sum(1 for trend in found.trends if trend.points)
    assert f"fill='white'><title>{DAYS[0]}: 0.8 (ok)</title>" in page, "immature: hollow"
    assert f"fill='#16a34a'><title>{DAYS[1]}: 0.81 (ok)</title>" in page
