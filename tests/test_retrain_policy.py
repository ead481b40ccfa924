"""When a run trains on a cadence longer than a night: when the champion is old enough, or
sooner when a monitoring check of `monitoring.retrain_on` failed after its training cutoff.
The metric rows are published to the real metrics table (Delta + warehouse) the policy reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mlpipeline.core.config import Settings
from mlpipeline.monitoring import metrics_table
from mlpipeline.monitoring.retrain_policy import training_due

pytestmark = pytest.mark.integration

CUTOFF = date(2026, 3, 1)
DAY = CUTOFF + timedelta(days=4)


def _publish(settings: Settings, run_day: date, check: str, metric: str, status: str) -> None:
    row = {
        "run_day": run_day,
        "scored_day": run_day,
        "check": check,
        "feature_or_metric": metric,
        "method": "test",
        "value": 0.5,
        "threshold": 0.3,
        "drifted": status != "ok",
        "status": status,
        "model_version": "3",
        "reference": None,
        "rows_current": 10,
        "rows_reference": 10,
        "computed_at": datetime.now(UTC),
    }
    metrics_table.publish(settings, run_day, metrics_table.metrics_table([row]))


def _due(settings: Settings, cutoff: date | None = CUTOFF, every: int = 7) -> tuple[bool, str]:
    triggers = ("input_drift", "realized_performance")
    return training_due(settings, DAY, lambda: cutoff, every=every, triggers=triggers)


def test_every_run_trains_at_a_one_day_cadence(settings: Settings) -> None:
    def no_lookup() -> date | None:
        raise AssertionError("the champion is not looked up when every run trains")

    assert training_due(settings, DAY, no_lookup, every=1, triggers=())[0] is True


def test_the_cadence_trains_without_a_champion_or_with_an_old_one(settings: Settings) -> None:
    assert _due(settings, cutoff=None) == (True, "no champion yet")
    trained, why = _due(settings, every=4)
    assert trained and "4 days old" in why


def test_a_young_champion_waits_for_its_cadence(settings: Settings) -> None:
    _publish(settings, CUTOFF + timedelta(days=1), "input_drift", "drift_share", "warning")
    _publish(settings, CUTOFF + timedelta(days=2), "prediction_drift", "score", "failed")
    _publish(settings, CUTOFF, "input_drift", "drift_share", "failed")  # before the cutoff's run
    trained, why = _due(settings)
    assert not trained and "no check of monitoring.retrain_on failed" in why


def test_a_failed_retrain_check_after_the_cutoff_trains_the_next_run(settings: Settings) -> None:
    drifted = CUTOFF + timedelta(days=3)
    _publish(settings, drifted, "input_drift", "drift_share", "failed")
    trained, why = _due(settings)
    assert trained and f"{drifted}: input_drift drift_share=0.5" in why
    _publish(settings, drifted, "input_drift", "drift_share", "ok")  # the day re-monitored
    assert _due(settings)[0] is False
    _publish(settings, drifted, "realized_performance", "roc_auc_floor", "failed")
    assert "realized_performance roc_auc_floor" in _due(settings)[1]
