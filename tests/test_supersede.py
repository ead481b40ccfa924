"""Declared categorical values and the operator's correction of a current revision
(`mlpipeline batches supersede`), on real DuckDB, GX and the folder object store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from mlpipeline.ingest import batches
from mlpipeline.ingest.revisions import load_revision, prepare_revision
from mlpipeline.ingest.supersede import supersede
from mlpipeline.warehouse import connect
from mlpipeline.warehouse.meta import update_day
from tests.test_ingest import DAY, GOOD_ROWS, HEADER, _promote, ingest, land

pytestmark = pytest.mark.unit

NEW_CATEGORY = "t4,c3,m9,crypto_atm,80.00,EUR,DE,pos,2026-03-10T11:00:00Z"
MALFORMED_CATEGORY = "t5,c3,m9,Bad Category!,80.00,EUR,DE,pos,2026-03-10T11:00:00Z"
UNKNOWN_CHANNEL = "t6,c3,m9,grocery,80.00,EUR,DE,atm,2026-03-10T11:00:00Z"


def _current(settings) -> list[str]:
    with connect(settings) as con:
        rows = con.execute("SELECT transaction_id FROM raw.transactions_current ORDER BY 1")
        return [r[0] for r in rows.fetchall()]


def _rejects(settings, batch_id: str, revision: str) -> list[tuple]:
    with connect(settings) as con:
        return con.execute(
            "SELECT source_row, rule, detail FROM meta.rejected_rows "
            "WHERE batch_id = ? AND revision = ? ORDER BY source_row",
            [batch_id, revision],
        ).fetchall()


def test_a_new_category_is_kept_a_malformed_one_and_an_undeclared_channel_are_rejected(
    local_store, settings
):
    land(local_store, [*GOOD_ROWS, NEW_CATEGORY, MALFORMED_CATEGORY, UNKNOWN_CHANNEL])
    prepared, status = ingest(local_store, settings)
    assert status == "ingested" and (prepared.rows_written, prepared.rows_rejected) == (4, 2)
    assert _rejects(settings, prepared.batch_id, prepared.revision) == [
        (
            5,
            "merchant_category is a well-formed code (lower-case letters, digits, . - _)",
            "merchant_category='Bad Category!'",
        ),
        (6, "channel in the declared list ['online', 'pos', 'contactless']", "channel='atm'"),
    ]


def test_supersede_drops_the_rows_breaking_a_rule_and_a_rerun_keeps_the_correction(
    local_store, settings
):
    land(local_store, [*GOOD_ROWS, NEW_CATEGORY])
    landed, _ = ingest(local_store, settings)
    _promote(settings, landed)
    with connect(settings) as con:
        update_day(con, DAY, published=True)
        update_day(con, DAY + timedelta(days=1), published=True)
        result = supersede(
            con,
            local_store,
            landed.batch_id,
            drop_rule="undeclared_merchant_category",
            run_id="t",
        )
        old = batches.get(con, landed.batch_id, landed.revision)
    assert result["status"] == "current" and result["supersedes"] == landed.revision
    assert result["stale_days"] == [DAY, DAY + timedelta(days=1)]
    assert old["status"] == "superseded"
    assert _current(settings) == ["t1", "t2", "t3"]
    assert _rejects(settings, landed.batch_id, result["revision"]) == [
        (4, "undeclared_merchant_category (dropped by operator)", "merchant_category='crypto_atm'")
    ]

    # The stale day's re-run reads the producer's landed files again: same content as the
    # superseded revision, and the correction stays current.
    again = prepare_revision(local_store, "transactions", DAY)
    assert again.revision == landed.revision
    with connect(settings) as con:
        assert load_revision(con, local_store, again, run_id="rerun") == "superseded"
        assert batches.promote(con, again.batch_id, again.revision, run_id="rerun") == "corrected"
        assert batches.corrected_by(con, again.batch_id, again.revision) == result["revision"]
        with pytest.raises(ValueError, match="no row .* breaks undeclared_merchant_category"):
            supersede(
                con,
                local_store,
                landed.batch_id,
                drop_rule="undeclared_merchant_category",
                run_id="t",
            )
    assert _current(settings) == ["t1", "t2", "t3"]


def test_the_batches_cli_shows_revisions_events_rejects_and_stale_days_in_full(
    local_store, settings, capsys, monkeypatch
):
    from mlpipeline.cli import main

    monkeypatch.delenv("AIRFLOW_API_URL", raising=False)
    land(local_store, [*GOOD_ROWS, NEW_CATEGORY])
    landed, _ = ingest(local_store, settings)
    _promote(settings, landed)
    with connect(settings) as con:
        update_day(con, DAY + timedelta(days=1), published=True)
    capsys.readouterr()
    main(["batches", "supersede", landed.batch_id, "--drop-rule", "undeclared_merchant_category"])
    result = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "}")
    main(["batches", "show", landed.batch_id])
    shown = capsys.readouterr().out
    for text in (
        "superseded",
        "current",
        f"supersedes {landed.revision}: drop rule undeclared_merchant_category",
        "undeclared_merchant_category (dropped by operator)",
        "merchant_category='crypto_atm'",
    ):
        assert text in shown
    main(["batches", "list"])
    listed = capsys.readouterr().out
    assert "status" in listed and result["revision"] in listed and landed.revision in listed
    main(["batches", "stale"])
    stale = capsys.readouterr().out
    assert f'"stale_days": ["{DAY}", "{DAY + timedelta(days=1)}"]' in stale
    assert f"mlpipeline airflow dags test fraud_nightly {DAY + timedelta(days=1)}" in stale


def test_supersede_from_a_corrected_file_row_checks_it_like_a_landed_one(
    local_store, settings, tmp_path: Path
):
    land(local_store, [*GOOD_ROWS, NEW_CATEGORY])
    landed, _ = ingest(local_store, settings)
    _promote(settings, landed)
    fixed = tmp_path / "transactions-fixed.csv"
    fixed.write_text("\n".join([HEADER, GOOD_ROWS[0], GOOD_ROWS[1], UNKNOWN_CHANNEL]) + "\n")
    with connect(settings) as con:
        result = supersede(con, local_store, landed.batch_id, file=fixed, run_id="t")
    assert result["status"] == "current" and (result["rows"], result["rejected"]) == (2, 1)
    assert _current(settings) == ["t1", "t2"]
    assert [r[1] for r in _rejects(settings, landed.batch_id, result["revision"])] == [
        "channel in the declared list ['online', 'pos', 'contactless']"
    ]


def test_supersede_refuses_what_it_cannot_do(local_store, settings):
    land(local_store, GOOD_ROWS)
    landed, _ = ingest(local_store, settings)
    with connect(settings) as con, pytest.raises(LookupError, match="no current revision"):
        supersede(con, local_store, landed.batch_id, drop_rule="x", run_id="t")
    _promote(settings, landed)
    with connect(settings) as con, pytest.raises(ValueError, match="--drop-rule takes one of"):
        supersede(con, local_store, landed.batch_id, drop_rule="amount", run_id="t")
