"""Great Expectations gates on real GX runs: passing data, failing data, warn-only handling."""

from __future__ import annotations

from datetime import date

import pandas as pd

from mlpipeline import gates, quality
from mlpipeline.ingest import prepare_revision
from mlpipeline.warehouse import connect
from tests.test_ingest import DAY, GOOD_ROWS, land


def test_raw_gate_passes_a_good_revision_and_records_results(local_store, settings):
    land(local_store, GOOD_ROWS)
    outcome = gates.raw_gate(local_store, prepare_revision(local_store, "transactions", DAY))
    assert outcome.success and not outcome.warnings
    with connect(settings) as con:
        quality.record(con, outcome, run_id="r1")
        rows = con.execute(
            "SELECT count(*), bool_and(success) FROM meta.validation_results WHERE subject = ?",
            [outcome.subject],
        ).fetchone()
    assert rows == (len(outcome.results), True)


def test_raw_gate_fails_on_critical_and_names_the_offending_values(local_store):
    land(local_store, GOOD_ROWS)
    prepared = prepare_revision(local_store, "transactions", DAY)
    prepared.rows_declared = 5
    outcome = gates.raw_gate(local_store, prepared)
    assert not outcome.success
    assert [f.expectation for f in outcome.failures] == ["expect_table_row_count_to_equal"]
    assert "observed 3" in outcome.describe()


def test_warning_expectations_are_recorded_but_do_not_fail(local_store):
    land(local_store, [r.replace("grocery", "casino") for r in GOOD_ROWS])
    outcome = gates.raw_gate(local_store, prepare_revision(local_store, "transactions", DAY))
    assert outcome.success
    assert [w.column for w in outcome.warnings] == ["merchant_category"]
    assert "'casino'" in outcome.warnings[0].observed


def test_training_set_gate_checks_label_rate(settings):
    df = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(3000)],
            "is_fraud": [1] * 1500 + [0] * 1500,
            "amount": [10.0] * 3000,
            "event_ts": pd.Timestamp("2026-01-01"),
            "txn_count_30d": 1,
        }
    )
    outcome = gates.training_set_gate(df, date(2026, 2, 1))
    assert [f.expectation for f in outcome.failures] == ["expect_column_mean_to_be_between"]
