"""The monitoring settings of pipeline.yaml (`monitoring:`): sample bound, tests, check statuses,
and what a day's status does (alert, fail the run)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlpipeline.core.config import pipeline_conf
from mlpipeline.monitoring.drift_tests import METHODS

CHECKS = (
    "input_drift",
    "score_drift",
    "decision_rate",
    "realized_performance",
    "serving_skew",
    "snapshot_age",
    "landing_delay",
)
# The lowest day status an action takes place at; `never` turns it off.
ACTION_LEVELS = ("warning", "failed", "never")


@dataclass(frozen=True)
class CheckThresholds:
    warning: float
    failure: float

    def status(self, value: float) -> str:
        """ok / warning / failed; a value that could not be computed (NaN) is a failure."""
        if math.isnan(value) or value >= self.failure:
            return "failed"
        return "warning" if value >= self.warning else "ok"


@dataclass(frozen=True)
class RealizedConf:
    """How scored days are pooled for realized performance (see `realized`)."""

    min_frauds: int
    min_label_age_days: int
    lookback_days: int


@dataclass(frozen=True)
class MonitoringActions:
    """What a day's status (its worst check's) does: each names the lowest status that acts."""

    alert: str
    fail_run: str

    def alerts(self, status: str) -> bool:
        return _reaches(status, self.alert)

    def fails_run(self, status: str) -> bool:
        return _reaches(status, self.fail_run)


def _reaches(status: str, level: str) -> bool:
    """`ok` and `no_reference` never act; `warning` acts at level warning, `failed` at both."""
    return status == "failed" and level != "never" or status == level == "warning"


@dataclass(frozen=True)
class MonitoringConf:
    sample_rows: int
    sample_seed: int
    drift_thresholds: dict[str, float]
    feature_drift_thresholds: dict[str, dict[str, float]]
    checks: dict[str, CheckThresholds]
    realized: RealizedConf
    actions: MonitoringActions

    @classmethod
    def load(cls) -> MonitoringConf:
        conf = pipeline_conf().get("monitoring")
        if not conf:
            raise ValueError(
                "pipeline.yaml has no `monitoring:` section; copy it from the project's "
                "mlpipeline/conf/pipeline.yaml"
            )
        missing = [f"checks.{name}" for name in CHECKS if name not in conf["checks"]]
        missing += [f"drift_thresholds.{m}" for m in METHODS if m not in conf["drift_thresholds"]]
        missing += [
            f"actions.{a}" for a in ("alert", "fail_run") if a not in conf.get("actions", {})
        ]
        if missing:
            raise ValueError(f"pipeline.yaml monitoring lacks {missing}; add them to `monitoring:`")
        checks = {
            name: CheckThresholds(
                float(conf["checks"][name]["warning"]), float(conf["checks"][name]["failure"])
            )
            for name in CHECKS
        }
        actions = MonitoringActions(str(conf["actions"]["alert"]), str(conf["actions"]["fail_run"]))
        if {actions.alert, actions.fail_run} - set(ACTION_LEVELS):
            raise ValueError(
                f"pipeline.yaml monitoring.actions: alert and fail_run are one of {ACTION_LEVELS}"
            )
        if int(conf["sample_rows"]) < 1:
            raise ValueError("pipeline.yaml monitoring.sample_rows must be at least 1")
        realized = conf.get("realized") or {}
        fields = ("min_frauds", "min_label_age_days", "lookback_days")
        absent = [f"realized.{name}" for name in fields if name not in realized]
        if absent or any(int(realized[name]) < 1 for name in fields):
            raise ValueError(
                f"pipeline.yaml monitoring.realized needs {list(fields)}, each at least 1 "
                f"(missing: {absent})"
            )
        return cls(
            sample_rows=int(conf["sample_rows"]),
            sample_seed=int(conf["sample_seed"]),
            drift_thresholds={k: float(v) for k, v in conf["drift_thresholds"].items()},
            feature_drift_thresholds=_feature_thresholds(conf.get("feature_drift_thresholds")),
            checks=checks,
            realized=RealizedConf(**{name: int(realized[name]) for name in fields}),
            actions=actions,
        )


def _feature_thresholds(conf: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per-feature overrides of `drift_thresholds` (Evidently's per_column_stattest_threshold)."""
    thresholds = {
        str(f): {str(m): float(v) for m, v in (t or {}).items()} for f, t in (conf or {}).items()
    }
    unknown = sorted({m for t in thresholds.values() for m in t} - set(METHODS))
    if unknown:
        raise ValueError(
            f"pipeline.yaml monitoring.feature_drift_thresholds names unknown tests {unknown}; "
            f"use {list(METHODS)}"
        )
    return thresholds
