"""Scoring stage: the day's transactions scored by the champion into the score table."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date
from typing import Any

from mlpipeline.pipeline.nightly.common import configured, object_store

log = logging.getLogger(__name__)


def score(day: str, run_id: str) -> dict[str, Any]:
    """Score D's transactions with the champion resolved now to an exact version (or record
    "no model yet"), then mark the day published once its snapshot export exists too."""
    from mlpipeline.features.export import ExportNotFound, latest_export
    from mlpipeline.scoring import score as scoring
    from mlpipeline.training import model_registry
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.meta import update_day

    settings = configured()
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    result = scoring.score_day(
        day,
        settings=settings,
        champion=champion,
        load_model=model_registry.load_model,
        run_id=run_id,
    )
    try:
        export = latest_export(object_store(), day)
    except ExportNotFound:
        export = None
    with connect(settings) as con:
        update_day(
            con,
            date.fromisoformat(day),
            export_id=export["export_id"] if export else None,
            snapshot_rows=export["row_count"] if export else None,
            published=export is not None,
        )
    if export is None:
        log.warning("day %s scored but not published: no snapshot export for cutoff %s", day, day)
    return {**dataclasses.asdict(result), "day": day, "published": export is not None}
