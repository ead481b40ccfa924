"""The pipeline's notion of time: a run processes day D (UTC) after D has ended.

`cutoff_ts(D)` is midnight UTC at the start of D+1, exclusive: "as of the cutoff" means strictly
before it. Every stage derives its window from these helpers so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def parse_day(value: str | date | datetime) -> date:
    """Accept `YYYY-MM-DD`, a date or a datetime (its UTC calendar day)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ValueError(f"not a day (expected YYYY-MM-DD): {value!r}") from exc


def cutoff_ts(day: date) -> datetime:
    """Exclusive end of day D: midnight UTC at the start of D+1 (naive, UTC by convention)."""
    return datetime.combine(day + timedelta(days=1), time.min)


def day_range(start: date, end: date) -> list[date]:
    """Inclusive range of days, oldest first."""
    if end < start:
        raise ValueError(f"start {start} is after end {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


class DayNotEnded(ValueError):
    """A run asked for a day whose data cannot be complete yet."""


def require_ended(day: date, *, now: datetime | None = None) -> date:
    """D once it has ended (its cutoff has passed, UTC); otherwise a DayNotEnded that says when
    it ends and which day is the last one a run can process now."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    if day >= today:
        raise DayNotEnded(
            f"day {day} has not ended yet (it ends at {cutoff_ts(day):%Y-%m-%d %H:%M} UTC; "
            f"today is {today} UTC): the last day a run can process is "
            f"{today - timedelta(days=1)}. Trigger the run with that day or an earlier one."
        )
    return day
