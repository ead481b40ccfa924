"""The nightly's timetable: which day a scheduled run covers, after any pause.

Run in a probe process with this checkout's Airflow environment (plugins import Airflow, which
reads its configuration at import)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.devtools.local_airflow import airflow_env
from tests.airflow_probe import run_probe

pytestmark = pytest.mark.unit

PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pendulum import UTC, DateTime
from airflow.timetables.base import DataInterval, TimeRestriction
from mlpipeline_airflow.processing_day import ProcessingDayTimetable

def day(text):
    return DateTime.fromisoformat(text).replace(tzinfo=UTC)

out = {}
for name, last, catchup in json.loads(sys.argv[2]):
    interval = None if last is None else DataInterval(day(last), day(last).add(days=1))
    info = ProcessingDayTimetable().next_dagrun_info(
        last_automated_data_interval=interval,
        restriction=TimeRestriction(earliest=day("2026-01-01"), latest=None, catchup=catchup),
    )
    out[name] = [info.data_interval.start.date().isoformat(),
                 info.data_interval.end.date().isoformat(), info.run_after.isoformat()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return airflow_env(Settings.under(tmp_path_factory.mktemp("timetable")))


def test_without_catchup_only_the_day_that_ended_last_is_due_even_after_a_long_pause(env):
    today = datetime.now(UTC).date()
    yesterday, week_ago = today - timedelta(days=1), today - timedelta(days=7)
    cases = [
        ("never ran", None, False),
        ("paused a week", week_ago.isoformat(), False),
        ("ran last night", yesterday.isoformat(), False),
        ("catchup after a week", week_ago.isoformat(), True),
    ]
    due = run_probe(PROBE, env, PROJECT_ROOT / "plugins", json.dumps(cases))
    assert due["never ran"][:2] == [yesterday.isoformat(), today.isoformat()]
    assert due["paused a week"][:2] == [yesterday.isoformat(), today.isoformat()]
    # The next day after the last run: tonight's, once today has ended.
    assert due["ran last night"][:2] == [today.isoformat(), (today + timedelta(1)).isoformat()]
    assert due["ran last night"][2].startswith((today + timedelta(1)).isoformat())
    # With catchup, every day after the last run, one by one.
    assert due["catchup after a week"][0] == (week_ago + timedelta(days=1)).isoformat()
