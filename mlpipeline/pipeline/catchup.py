"""Load history day by day outside Airflow, with the same stage code the nightly DAG runs.

Used to bootstrap a warehouse (the demo's history, a new environment): each day's batches are
ingested, checked and promoted in order, then one dbt build computes every cutoff.
"""

from __future__ import annotations

import logging
import time
from datetime import date

from mlpipeline import warehouse
from mlpipeline.core.days import day_range
from mlpipeline.pipeline import nightly

log = logging.getLogger(__name__)


def catchup(start: date, end: date, *, run_id: str = "catchup", build: bool = True) -> list[dict]:
    """Ingest, check and promote every dataset-day in [start, end], then build the features.
    Bootstrapping is setup: it creates the warehouse when there is none yet."""
    warehouse.create()
    days = day_range(start, end)
    loaded: list[dict] = []
    began = time.monotonic()
    for done, day in enumerate(days, start=1):
        for dataset in nightly.DATASETS:
            prepared = nightly.prepare(dataset, day.isoformat())
            nightly.load(prepared, run_id)
            nightly.check_raw(prepared, run_id)
            loaded.append(nightly.promote(prepared, run_id))
        elapsed = time.monotonic() - began
        log.info(
            "catch-up: %d/%d days (%s) in %.0fs, %.1f days/s, about %.0fs left",
            done,
            len(days),
            day,
            elapsed,
            done / elapsed,
            (len(days) - done) * elapsed / done,
        )
    if build:
        nightly.build_features(end.isoformat(), full_refresh=True)
    return loaded
