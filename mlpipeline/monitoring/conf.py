"""The monitoring settings of pipeline.yaml (`monitoring:`): sample bound, tests, check statuses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlpipeline.core.config import pipeline_conf
from mlpipeline.monitoring.drift_tests import METHODS

CHECKS = ("input_drift", "score_drift", "decision_rate", "realized_performance")


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
class MonitoringConf:
    sample_rows: int
    sample_seed: int
    drift_thresholds: dict[str, float]
    checks: dict[str, CheckThresholds]
    realized: RealizedConf

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
        if missing:
            raise ValueError(f"pipeline.yaml monitoring lacks {missing}; add them to `monitoring:`")
        checks = {
            name: CheckThresholds(
                float(conf["checks"][name]["warning"]), float(conf["checks"][name]["failure"])
            )
            for name in CHECKS
        }
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
            checks=checks,
            realized=RealizedConf(**{name: int(realized[name]) for name in fields}),
        )
