"""Suite results in the warehouse (`meta.validation_results`), one row per evaluated
expectation, so a reader can see which checks a subject passed."""

from __future__ import annotations

import duckdb

from mlpipeline.quality.outcome import CheckOutcome
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import ensure_meta, utcnow


def record(con: duckdb.DuckDBPyConnection, outcome: CheckOutcome, *, run_id: str | None) -> None:
    """Store every evaluated expectation's result for the outcome's subject (a batch revision,
    a cutoff, a training cutoff), as one unit: another writer of the registry at the same time
    (the other dataset's check) makes it run again, not fail."""
    ensure_meta(con)
    now = utcnow()
    rows = [
        (
            outcome.subject,
            outcome.suite,
            r.label,
            r.column,
            r.severity,
            r.success,
            r.observed if not r.success else f"ok: {r.observed}",
            run_id,
            now,
        )
        for r in outcome.results
    ]
    lake.run_unit(
        con,
        f"results of {outcome.suite} for {outcome.subject}",
        lambda c: c.executemany(
            "INSERT INTO meta.validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        ),
    )
