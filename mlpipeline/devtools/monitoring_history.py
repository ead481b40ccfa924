"""The demo's monitoring history: the days before the demo's night scored by its champion and
monitored, so the report page has trends and realized performance to show.

Library calls, as catch-up loads history: each day is scored by the night's champion (as if it
had served those days; the days after its label horizon are new to it, the older ones include
its own test rows, which is where realized performance matures first), then every run day is
monitored in order, the night last, each on the labels known at its own end.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

from mlpipeline.core.config import Settings
from mlpipeline.core.days import day_range
from mlpipeline.pipeline.monitor_days import monitor_days
from mlpipeline.scoring import score
from mlpipeline.training import model_registry

log = logging.getLogger(__name__)


def build(settings: Settings, night: date, days: int) -> dict[str, object]:
    """Score the `days` days before `night` with the champion, then monitor them and the night."""
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    if champion is None:
        log.warning("monitoring history: no champion after the night; nothing to score")
        return {"days": 0, "note": "no champion: the night did not promote a model"}
    history = day_range(night - timedelta(days=days), night - timedelta(days=1))
    began = time.monotonic()
    for done, day in enumerate(history, start=1):
        score.score_day(
            day,
            settings=settings,
            champion=champion,
            load_model=model_registry.load_model,
            run_id="demo-monitoring-history",
        )
        _progress(done, len(history), began)
    failed = monitor_days(settings, history[0], night, report=log.debug)
    return {
        "days": len(history) + 1,
        "first": history[0],
        "failed": {str(day): why for day, why in failed.items()},
    }


def _progress(done: int, total: int, began: float) -> None:
    elapsed = time.monotonic() - began
    log.info(
        "monitoring history: scored %d/%d days in %.0fs, about %.0fs left",
        done,
        total,
        elapsed,
        (total - done) * elapsed / done,
    )
