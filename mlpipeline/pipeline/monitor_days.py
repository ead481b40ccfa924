"""Monitor a range of scored days outside Airflow, with the checks the nightly's `monitor` runs:
after a threshold change, a rescore, or for days scored before monitoring existed.

Days run oldest first; a day that fails (an error, or a status that fails the nightly's run:
`monitoring.actions.fail_run`) is logged and named, and the next day still runs. No alert is
sent: the command prints each day's summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date

from mlpipeline.core.config import Settings
from mlpipeline.core.days import day_range
from mlpipeline.monitoring.conf import MonitoringConf
from mlpipeline.monitoring.monitor import monitor_day
from mlpipeline.pipeline.nightly.monitoring import checked

log = logging.getLogger(__name__)


def monitor_days(
    settings: Settings, start: date, end: date, *, report: Callable[[str], None] = log.info
) -> dict[date, str]:
    """Monitor every scored day in [start, end] as its own run day, handing each summary's text
    to `report`; returns the days that failed and why (empty when none did)."""
    days = day_range(start, end)
    conf = MonitoringConf.load()
    failed: dict[date, str] = {}
    began = time.monotonic()
    for done, day in enumerate(days, start=1):
        try:
            summary = monitor_day(settings, day, conf=conf)
            report(summary.text())
            outcome = checked(summary.result(), conf.actions)["status"]
        except Exception as exc:  # one day's failure must not stop the range: named at the end
            failed[day] = f"{type(exc).__name__}: {exc}"
            outcome = f"FAILED ({failed[day]})"
        log.info(
            "monitoring %d/%d days: %s %s, %.0fs elapsed",
            done,
            len(days),
            day,
            outcome,
            time.monotonic() - began,
        )
    return failed
