"""The raw quality gate on a 1M-row transactions revision against ingesting that revision.

Baseline: ingest (prepare_revision + load_revision) of the day, measured in the same run.
Value: the raw gate as the nightly's check_raw runs it (read the loaded revision, derive
columns, GX suite, Data Docs page built and mirrored to the folder store, results recorded).
A previous 1M-row day is current, so the checks against recent history and the duplicate
lookup have real data to work on. GX is imported before timing: every Airflow task pays that
import once whatever it validates, like the ingest task pays pyarrow's.
Target: validation at most 2x the ingest time.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

from benchmarks.harness import Result, timed
from mlpipeline import quality, warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.devtools.generate import generate_day
from mlpipeline.ingest import batches, gates
from mlpipeline.ingest.revisions import load_revision, prepare_revision
from mlpipeline.warehouse import connect

DAY = date(2026, 3, 10)
CUSTOMERS = 890_000  # about 1.0M transactions a day

log = logging.getLogger(__name__)


def _ingest(settings: Settings, store: LocalStore, day: date):  # noqa: ANN202 - PreparedRevision
    prepared = prepare_revision(store, "transactions", day)
    with connect(settings) as con:
        load_revision(con, store, prepared, run_id="bench")
    return prepared


def _validate(settings: Settings, store: LocalStore, prepared) -> quality.CheckOutcome:  # noqa: ANN001
    docs = quality.DataDocs.from_settings(settings, store)
    with connect(settings) as con:
        outcome = gates.raw_gate(con, prepared.batch_id, prepared.revision, docs=docs)
        quality.record(con, outcome, run_id="bench")
    return outcome


def run(workdir: Path) -> list[Result]:
    settings = Settings.under(workdir)
    warehouse.create(settings)
    store = LocalStore(settings.local_store_root)
    previous = DAY - timedelta(days=1)
    for day in (previous, DAY):
        generate_day(store, day, customers=CUSTOMERS, history_start=previous)
    earlier = _ingest(settings, store, previous)
    with connect(settings) as con:
        batches.set_status(con, earlier.batch_id, earlier.revision, "validated", run_id="bench")
        batches.promote(con, earlier.batch_id, earlier.revision, run_id="bench")
    import great_expectations  # noqa: F401 - imported before timing, see the module docstring

    ingest_s, prepared = timed(_ingest, settings, store, DAY)
    validate_s, outcome = timed(_validate, settings, store, prepared)
    if not outcome.success:
        raise RuntimeError(f"the benchmark's day should pass its raw gate:\n{outcome.describe()}")
    log.warning(
        "raw gate on %d rows: %.1fs, ingest %.1fs (%d expectations evaluated)",
        outcome.rows,
        validate_s,
        ingest_s,
        len(outcome.results),
    )
    return [
        Result.at_most("validate_1m_row_raw_revision_vs_ingest", validate_s, "s", ingest_s, 2.0)
    ]
