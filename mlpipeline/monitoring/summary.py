"""A run day's monitoring rows as a summary a person reads (`mlpipeline monitor show DAY`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from mlpipeline.monitoring.checks import DRIFT_SHARE, INPUT_DRIFT, PREDICTION_DRIFT
from mlpipeline.monitoring.freshness import FRESHNESS
from mlpipeline.monitoring.realized import PENDING, REALIZED
from mlpipeline.monitoring.serving_skew import METRICS, SERVING_SKEW

# Worst first: the day's status is its worst check's (a realized measure still waiting for
# labels is no worse than ok; a day without logged /score requests to replay, or without an
# online snapshot or a current batch to time, is no worse either).
STATUS_ORDER = ("failed", "warning", "no_reference", "ok", PENDING)
# Checks whose `no_reference` rows do not count in the day's status (nothing to measure).
INFORMATIONAL_WITHOUT_REFERENCE = (SERVING_SKEW, FRESHNESS)


@dataclass(frozen=True)
class MonitoringSummary:
    run_day: date
    scored_day: date
    model_version: str | None
    status: str
    drift_share: float | None
    drifted_features: tuple[str, ...]
    rows: pd.DataFrame

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> MonitoringSummary:
        if rows.empty:
            raise ValueError("no monitoring rows to summarise")
        per_feature = (rows["check"] == INPUT_DRIFT) & (rows["feature_or_metric"] != DRIFT_SHARE)
        share = rows.loc[(rows["check"] == INPUT_DRIFT) & ~per_feature, "value"]
        drifted = per_feature & rows["drifted"].fillna(False).astype(bool)
        nothing_to_measure = rows["check"].isin(INFORMATIONAL_WITHOUT_REFERENCE) & (
            rows["status"] == "no_reference"
        )
        first = rows.iloc[0]
        version = first["model_version"]
        return cls(
            run_day=pd.Timestamp(first["run_day"]).date(),
            scored_day=pd.Timestamp(first["scored_day"]).date(),
            model_version=None if pd.isna(version) else str(version),
            status=min(
                rows.loc[~per_feature & ~nothing_to_measure, "status"], key=STATUS_ORDER.index
            ),
            drift_share=None if share.isna().all() else float(share.iloc[0]),
            drifted_features=tuple(rows.loc[drifted, "feature_or_metric"]),
            rows=rows,
        )

    def result(self) -> dict[str, Any]:
        """The summary as JSON-able values (a task's XCom, an alert's payload): the day's
        status, its checks per status, those at warning or failed, and the drifted inputs."""
        rows = self.rows
        per_feature = (rows["check"] == INPUT_DRIFT) & (rows["feature_or_metric"] != DRIFT_SHARE)
        graded = rows[~per_feature]
        failed = _checks_at(graded, "failed")
        return {
            "run_day": self.run_day.isoformat(),
            "scored_day": self.scored_day.isoformat(),
            "model_version": self.model_version,
            "status": self.status,
            "checks": {str(k): int(n) for k, n in graded["status"].value_counts().items()},
            "failed_checks": failed,
            "warned_checks": _checks_at(graded, "warning"),
            "drift_share": self.drift_share,
            "features_compared": int(per_feature.sum()),
            "drifted_features": list(self.drifted_features),
            "show": f"mlpipeline monitor show {self.run_day.isoformat()}",
            "report": f"mlpipeline monitor report {self.run_day.isoformat()}",
            "below_floors": [
                c["metric"].removesuffix("_floor")
                for c in failed
                if c["check"] == REALIZED and c["metric"].endswith("_floor")
            ],
        }

    def text(self) -> str:
        lines = [
            f"monitoring of scored day {self.scored_day} (run day {self.run_day}), model "
            f"version {self.model_version or '-'}: {self.status}"
        ]
        for check in (INPUT_DRIFT, PREDICTION_DRIFT, REALIZED, SERVING_SKEW, FRESHNESS):
            part = self.rows[self.rows["check"] == check]
            if part.empty:
                continue
            lines.append(f"{check.replace('_', ' ')}: reference {part['reference'].iloc[0]}")
            if check == INPUT_DRIFT:
                total = part[part["feature_or_metric"] == DRIFT_SHARE].iloc[0]
                if total["status"] == "no_reference":
                    continue
                lines.append(
                    f"  drift share {total['value']:.3f} ({len(self.drifted_features)} of "
                    f"{len(part) - 1} inputs; warning at {total['threshold']:g}): "
                    f"{total['status']}"
                )
                part = part[part["feature_or_metric"].isin(self.drifted_features)]
            if check == SERVING_SKEW:
                # The matching, timing and score rows, and the served features that differ.
                metric = part["feature_or_metric"].isin(METRICS)
                part = part[metric | (part["status"] != "ok")]
            lines += [_line(row) for _, row in part.iterrows()]
        return "\n".join(lines)


def _line(row: pd.Series) -> str:
    value = "-" if pd.isna(row["value"]) else f"{row['value']:.4g}"
    limit = "-" if pd.isna(row["threshold"]) else f"{row['threshold']:g}"
    return (
        f"  {row['feature_or_metric']:<24} {text_cell(row['method']):<16} value {value:<10} "
        f"threshold {limit:<6} {row['status']}"
    )


def _checks_at(graded: pd.DataFrame, status: str) -> list[dict[str, Any]]:
    """The graded checks at `status`, with their value and warning level."""
    return [
        {
            "check": row["check"],
            "metric": row["feature_or_metric"],
            "value": _finite(row["value"]),
            "warning_at": None if pd.isna(row["threshold"]) else float(row["threshold"]),
        }
        for _, row in graded[graded["status"] == status].iterrows()
    ]


def _finite(value: Any) -> float | None:
    """A JSON number: None for a value not computed (NaN) or unbounded (a rate from zero)."""
    return None if pd.isna(value) or math.isinf(value) else float(value)


def text_cell(value: Any) -> str:
    """A text cell; '-' for a missing one (None, or NaN once read back from the table)."""
    return "-" if value is None or pd.isna(value) else str(value)
