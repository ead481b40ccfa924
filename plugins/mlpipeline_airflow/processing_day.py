"""Make "run for day D" mean the same thing for scheduled, manual and test runs.

Scheduled runs of `ProcessingDayTimetable` cover [D, D+1) and start once D has ended; a manual
run (UI trigger, `airflow dags test DAG D`) covers the day of the logical date it is given, not the
interval before it. Tasks read D with `processing_day(context)`, which also honours an explicit
`day` param; the run's first task fails when D cannot be determined or has not ended.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

# Timetables and plugins are scheduler-side: the Task SDK has neither, and Airflow 3.3 documents
# these two imports for them.
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import UTC, DateTime, Time

from mlpipeline.core.days import DayNotEnded, require_ended


def _midnight(value: DateTime) -> DateTime:
    return DateTime.combine(value.in_timezone(UTC).date(), Time.min).replace(tzinfo=UTC)


class ProcessingDayTimetable(Timetable):
    """Daily runs whose data interval is exactly the processing day, scheduled after it ends."""

    description = "Daily, for day D once D has ended (UTC)"
    periodic = True
    can_be_scheduled = True

    @property
    def summary(self) -> str:
        return "daily after the day ends (UTC)"

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        start = _midnight(run_after)
        return DataInterval(start=start, end=start + timedelta(days=1))

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            next_start = _midnight(last_automated_data_interval.start) + timedelta(days=1)
        elif restriction.earliest is not None:
            next_start = _midnight(restriction.earliest)
        else:
            return None
        if not restriction.catchup:
            # However long the DAG was paused, only the day that ended last is due: older days
            # are a backfill's job.
            next_start = max(next_start, _midnight(DateTime.now(UTC)) - timedelta(days=1))
        if restriction.latest is not None and next_start > restriction.latest:
            return None
        return DagRunInfo.interval(start=next_start, end=next_start + timedelta(days=1))


def processing_day(context: dict[str, Any]) -> date:
    """D for this run: the `day` param when given, else the data interval's start (UTC)."""
    param = (context.get("params") or {}).get("day")
    if param:
        return date.fromisoformat(str(param))
    start = context.get("data_interval_start")
    if start is None:
        raise ValueError(
            "cannot determine the processing day: this run has no data interval (a manual run "
            "without a logical date). Trigger it with a logical date, or set the 'day' param "
            "(YYYY-MM-DD)."
        )
    return start.in_timezone(UTC).date() if hasattr(start, "in_timezone") else start.date()


def ended_processing_day(context: dict[str, Any]) -> date:
    """D for a run's first task, refused (failing at once, no retry) when D has not ended:
    its files cannot be complete, and its sensors would hold the run's slot for hours."""
    try:
        return require_ended(processing_day(context))
    except DayNotEnded as exc:
        raise AirflowFailException(str(exc)) from exc


class ProcessingDayPlugin(AirflowPlugin):
    name = "processing_day"
    timetables = [ProcessingDayTimetable]
