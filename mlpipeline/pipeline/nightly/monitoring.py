"""Monitoring stage: the scored day's inputs and scores against the version that scored it.

Runs after scoring. The day's metrics are published whatever they say; then pipeline.yaml's
`monitoring.actions` decide: a status at `fail_run` raises `MonitoringFailed` (the run goes red
and its failure alert names the checks), one at `alert` is marked for the task to alert.
Only a scheduled run grades the day's freshness: any other run monitors the day after its end
by design (a catch-up, backfill or manual run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlpipeline.pipeline.nightly.common import configured, run_kind

if TYPE_CHECKING:
    from mlpipeline.monitoring.conf import MonitoringActions

log = logging.getLogger(__name__)


class MonitoringFailed(Exception):
    """A monitored day's status fails the run; its metrics are published. `result` is the
    day's summary (`MonitoringSummary.result`, as `checked` completes it), which the alert is
    written from."""

    def __init__(self, result: dict[str, Any]) -> None:
        failed = ", ".join(
            f"{c['check']}.{c['metric']} = {_value(c['value'])}"
            for c in [*result["failed_checks"], *result["warned_checks"]]
        )
        super().__init__(
            f"monitoring of scored day {result['scored_day']} (model version "
            f"{result['model_version']}) is {result['status']}: {failed}; drifted inputs: "
            f"{', '.join(result['drifted_features']) or 'none'}. See `{result['show']}`."
        )
        self.result = result


def _value(value: float | None) -> str:
    return "not computable" if value is None else f"{value:.4g}"


def monitor(day: str, run_id: str, *, run_type: object = "manual") -> dict[str, Any]:
    """Monitor scored day D as run day D; returns its summary, or raises `MonitoringFailed`
    once the metrics are published when the day's status fails the run. `run_type` is the
    Airflow run's: a `scheduled` one grades freshness."""
    from mlpipeline.monitoring.conf import MonitoringConf
    from mlpipeline.monitoring.monitor import monitor_day

    conf = MonitoringConf.load()
    graded = run_kind(run_type) == "scheduled"
    summary = monitor_day(configured(), day, conf=conf, graded_freshness=graded)
    return checked({**summary.result(), "run_id": run_id}, conf.actions)


def checked(result: dict[str, Any], actions: MonitoringActions) -> dict[str, Any]:
    """`result` with what its status does (`alert`, `fails_run`); raises `MonitoringFailed`
    when it fails the run, else logs what the status means and returns it."""
    status = result["status"]
    result = {**result, "alert": actions.alerts(status), "fails_run": actions.fails_run(status)}
    if result["fails_run"]:
        raise MonitoringFailed(result)
    if status == "no_reference":
        log.info(
            "monitoring of %s: nothing to compare with (no model scored the day, or the "
            "version has no reference); passes. See `%s`.",
            result["scored_day"],
            result["show"],
        )
    elif status != "ok":
        log.warning(
            "monitoring of %s: %s (checks %s); the run goes on. See `%s`.",
            result["scored_day"],
            status,
            [
                f"{c['check']}.{c['metric']}"
                for c in result["failed_checks"] + result["warned_checks"]
            ],
            result["show"],
        )
    return result
