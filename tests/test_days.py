"""Day rules: a run processes day D only once D has ended (UTC), whichever way D was given."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mlpipeline.core.days import DayNotEnded, require_ended

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 23, 59, tzinfo=UTC)


def test_yesterday_has_ended_today_and_later_have_not():
    assert require_ended(date(2026, 3, 9), now=NOW) == date(2026, 3, 9)
    for day in (date(2026, 3, 10), date(2999, 1, 1)):
        with pytest.raises(DayNotEnded) as error:
            require_ended(day, now=NOW)
        assert f"day {day} has not ended yet" in str(error.value)
        assert "the last day a run can process is 2026-03-09" in str(error.value)


def test_the_nightlys_first_task_refuses_an_unended_day_without_retrying():
    """The `day` param and the logical date both go through the same rule."""
    from airflow.sdk.exceptions import AirflowFailException

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))
    try:
        from mlpipeline_airflow.processing_day import ended_processing_day
    finally:
        sys.path.pop(0)
    with pytest.raises(AirflowFailException, match="2999-01-01 has not ended"):
        ended_processing_day({"params": {"day": "2999-01-01"}})
    future = datetime(2999, 1, 1, tzinfo=UTC)
    with pytest.raises(AirflowFailException, match="has not ended"):
        ended_processing_day({"params": {}, "data_interval_start": future})
    past = datetime(2026, 1, 5, tzinfo=UTC)
    assert ended_processing_day({"params": {}, "data_interval_start": past}) == date(2026, 1, 5)
