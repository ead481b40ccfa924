"""What a downstream reader does when "scores for day D are ready": read exactly what was
published for D and summarise it. `example_scores_consumer` (dags/) runs this; copy both.

A `fraud.scores` event's `extra` names the day and the Delta table version its commit created,
so the reader reads D at that version: what that night published, even if D was re-scored since.
Only the score table is read (never the warehouse the nightly holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import ObjectStore


def summarize(target: Settings | ObjectStore, event: Mapping[str, Any]) -> dict[str, Any]:
    """Rows, flagged rows (the `decision` column: score at or above the model version's stored
    threshold) and the highest score of the day an event names. `event` is a `fraud.scores`
    event's extra (`day`, `table_version`, `no_model_yet`); a day alone reads the current table.
    """
    from mlpipeline.scoring.score_table import read_scores

    if "day" not in event:
        raise ValueError(
            f"a scores event names its day in extra['day']; got {dict(event)}. Is this an event "
            "of the fraud.scores asset?"
        )
    day = parse_day(event["day"]).isoformat()
    version = event.get("table_version")
    summary: dict[str, Any] = {"day": day, "table_version": version}
    if event.get("no_model_yet"):
        # Nothing was written for the day: no champion yet (cold start).
        return {**summary, "no_model_yet": True, "rows": 0, "flagged": 0, "max_score": None}
    frame = read_scores(target, day, version=version)
    return {
        **summary,
        "no_model_yet": False,
        "rows": len(frame),
        "flagged": int(frame["decision"].sum()),
        "max_score": float(frame["score"].max()) if len(frame) else None,
        "model_versions": sorted(str(v) for v in frame["model_version"].unique()),
    }


def describe(summary: Mapping[str, Any]) -> str:
    """One log line for a summary."""
    version = summary.get("table_version")
    at = f" (score table version {version})" if version is not None else " (current table)"
    if summary.get("no_model_yet"):
        return f"scores for {summary['day']}{at}: none, no model yet"
    top = summary["max_score"]
    return (
        f"scores for {summary['day']}{at}: {summary['rows']} rows, {summary['flagged']} flagged, "
        f"max score {'-' if top is None else f'{top:.4f}'}, model version(s) "
        f"{', '.join(summary['model_versions']) or '-'}"
    )
