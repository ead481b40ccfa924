"""Monitoring stage: the scored day's inputs and scores against the version that scored it.

Runs after scoring. The day's metrics are published whatever they say; a check at `failed`
then raises `MonitoringFailed`, so the run goes red and its failure alert names the checks.
"""

from __future__ import annotations

import logging
from typing import Any

from mlpipeline.pipeline.nightly.common import configured

log = logging.getLogger(__name__)


class MonitoringFailed(Exception):
    """A monitored day has a check at `failed`; its metrics are published. `result` is the
    day's summary (`MonitoringSummary.result`), which the alert is written from."""

    def __init__(self, result: dict[str, Any]) -> None:
        failed = ", ".join(
            f"{c['check']}.{c['metric']} = {_value(c['value'])}" for c in result["failed_checks"]
        )
        super().__init__(
            f"monitoring of scored day {result['scored_day']} (model version "
            f"{result['model_version']}) failed: {failed}; drifted inputs: "
            f"{', '.join(result['drifted_features']) or 'none'}. See `{result['show']}`."
        )
        self.result = result


def _value(value: float | None) -> str:
    return "not computable" if value is None else f"{value:.4g}"


def monitor(day: str, run_id: str) -> dict[str, Any]:
    """Monitor scored day D as run day D; returns its summary, or raises `MonitoringFailed`
    once the metrics are published when a check failed."""
    from mlpipeline.monitoring.monitor import monitor_day

    return checked({**monitor_day(configured(), day).result(), "run_id": run_id})


def checked(result: dict[str, Any]) -> dict[str, Any]:
    """`result` when no check failed, with a log line saying what the status means."""
    status = result["status"]
    if status == "failed":
        raise MonitoringFailed(result)
    if status == "no_reference":
        log.info(
            "monitoring of %s: nothing to compare with (no model scored the day, or the "
            "version has no reference); passes. See `%s`.",
            result["scored_day"],
            result["show"],
        )
    elif status == "warning":
        log.warning(
            "monitoring of %s: checks at warning %s; see `%s`",
            result["scored_day"],
            [f"{c['check']}.{c['metric']}" for c in result["warned_checks"]],
            result["show"],
        )
    return result
