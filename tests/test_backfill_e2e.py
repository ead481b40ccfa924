"""End to end with real Airflow runs: a quarantined day, its release, late data, and the backfill
launcher's validation.

On a copy of the session's history (tests/history.py), the nightly run with `airflow dags test`
day by day from its day D (Q below), as the release prints it, with param train=false (the story
is about data, not models):
- day Q's transactions declare more rows than they hold: the run fails, the revision is
  quarantined and nothing downstream sees it; the next day still runs, flagged as built on
  incomplete history (meta.days and the export manifest);
- the next day's transactions are re-delivered with different content (late data);
- `mlpipeline batches release` makes Q current, marks Q and the later day stale and prints the
  commands; re-running them in order makes Q visible, picks up the late revision, clears the
  flags and recomputes the later day's features;
- `fraud_backfill` refuses a malformed range before triggering anything.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from mlpipeline.cli import main as cli
from mlpipeline.core import landing
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools import local_airflow
from mlpipeline.devtools.generate import generate_range
from mlpipeline.features.export import latest_export
from mlpipeline.warehouse import connect
from tests.e2e_env import pipeline_env, private_redis
from tests.history import CUSTOMERS, NIGHT, copy_history

pytestmark = pytest.mark.e2e

QUARANTINED = NIGHT
LATE = QUARANTINED + timedelta(days=1)


def _miscount(store, dataset: str, day: date) -> None:
    """The producer's _SUCCESS declares one row more than its first file holds."""
    files = landing.read_success(store, dataset, day)
    files[0] = landing.DeclaredFile(files[0].name, files[0].rows + 1)
    landing.write_success(store, dataset, day, files)


def _redeliver(store, dataset: str, day: date, rows: int = 20) -> None:
    """Late data: the producer re-delivers the day with the first `rows` amounts corrected
    (+1.00 EUR each); same row count, different content."""
    files = landing.read_success(store, dataset, day)
    key = landing.day_prefix(dataset, day) + files[0].name
    header, *lines = store.get_bytes(key).decode().splitlines()
    column = header.split(",").index("amount")
    for i in range(min(rows, len(lines))):
        values = lines[i].split(",")
        values[column] = f"{float(values[column]) + 1:.2f}"
        lines[i] = ",".join(values)
    store.put_bytes(key, ("\n".join([header, *lines]) + "\n").encode())
    landing.write_success(store, dataset, day, files)


def _state(settings: Settings, day: date) -> dict:
    with connect(settings, read_only=True) as con:
        features = con.execute(
            "SELECT count(*) FROM features.transaction_features WHERE dt = ?", [day]
        ).fetchone()[0]
        snapshot = con.execute(
            "SELECT count(*), sum(txn_count_7d), sum(amount_sum_7d) "
            "FROM features.customer_snapshot WHERE cutoff_date = ?",
            [day],
        ).fetchone()
        end = datetime.combine(day + timedelta(days=1), datetime.min.time())
        raw_7d = con.execute(
            "SELECT count(*), sum(amount) FROM raw.transactions_current "
            "WHERE event_ts >= ? AND event_ts < ?",
            [end - timedelta(days=7), end],
        ).fetchone()
        current = con.execute(
            "SELECT count(*) FROM raw.transactions_current WHERE dt = ?", [day]
        ).fetchone()[0]
        revisions = dict(
            con.execute(
                "SELECT revision, status FROM meta.batches WHERE batch_id = ?",
                [f"transactions-{day}"],
            ).fetchall()
        )
        row = con.execute(
            "SELECT incomplete_history, missing_batches, stale, rows_to_score FROM meta.days "
            "WHERE day = ?",
            [day],
        ).fetchone()
    keys = ["incomplete_history", "missing_batches", "stale", "rows_to_score"]
    return {
        "features": features,
        "snapshot_rows": snapshot[0],
        "snapshot_txn_7d": snapshot[1],
        "snapshot_amount_7d": snapshot[2],
        "raw_7d": raw_7d[0],
        "raw_amount_7d": raw_7d[1],
        "current_rows": current,
        "revisions": revisions,
        **dict(zip(keys, row or [None] * 4, strict=True)),
    }


def _nightly(day: date, env: dict, conf: dict | None = None) -> tuple[int, dict]:
    conf = {"train": False, **(conf or {})}
    args = ["dags", "test", "fraud_nightly", day.isoformat(), "-c", json.dumps(conf)]
    code = local_airflow.run(args, env, check=False)
    return code, local_airflow.task_states("fraud_nightly", day, env)


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, e2e_history: Path
) -> Iterator[dict]:
    data_dir = copy_history(e2e_history, tmp_path_factory.mktemp("backfill-e2e"))
    redis_url = private_redis(redis_server, 6)
    with pipeline_env(data_dir, redis_url) as settings:
        store = from_settings(settings)
        generate_range(store, QUARANTINED, LATE, customers=CUSTOMERS)
        env = local_airflow.airflow_env(settings)
        local_airflow.init(env)
        out: dict = {"settings": settings, "store": store}

        _miscount(store, "transactions", QUARANTINED)
        out["quarantined_run"] = _nightly(QUARANTINED, env)
        out["quarantined_state"] = _state(settings, QUARANTINED)
        out["next_run"] = _nightly(LATE, env)
        out["next_state"] = _state(settings, LATE)
        out["next_manifest"] = latest_export(store, LATE)

        _redeliver(store, "transactions", LATE)
        cli(["batches", "release", f"transactions-{QUARANTINED}"])
        out["stale"] = {d: _state(settings, d)["stale"] for d in (QUARANTINED, LATE)}
        out["rerun"] = _nightly(QUARANTINED, env)
        out["rerun_state"] = _state(settings, QUARANTINED)
        out["late_rerun"] = _nightly(LATE, env, {"push_online": False})
        out["late_state"] = _state(settings, LATE)
        out["late_manifest"] = latest_export(store, LATE)

        bad = {"start": LATE.isoformat(), "end": QUARANTINED.isoformat()}
        args = ["dags", "test", "fraud_backfill", LATE.isoformat(), "-c", json.dumps(bad)]
        out["backfill_code"] = local_airflow.run(args, env, check=False)
        out["backfill_states"] = local_airflow.task_states("fraud_backfill", LATE, env)

        # A valid range while fraud_nightly is paused (every DAG is created paused).
        good = {"start": QUARANTINED.isoformat(), "end": LATE.isoformat()}
        paused = subprocess.run(
            [local_airflow.airflow_executable(), "dags", "test", "fraud_backfill"]
            + [QUARANTINED.isoformat(), "-c", json.dumps(good)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        out["paused_backfill"] = (
            paused.returncode,
            paused.stdout + paused.stderr,
            local_airflow.task_states("fraud_backfill", QUARANTINED, env),
        )
        yield out


def test_quarantined_day_fails_and_nothing_downstream_sees_it(story):
    code, states = story["quarantined_run"]
    state = story["quarantined_state"]
    assert code != 0
    assert states["ingest_transactions.load_transactions"] == "failed"
    downstream = [s for t, s in states.items() if t.startswith(("dbt_build", "check_snapshot"))]
    assert downstream and "success" not in downstream
    assert states["score"] != "success"
    assert list(state["revisions"].values()) == ["quarantined"]
    assert state["current_rows"] == 0 and state["features"] == 0


def test_next_day_runs_flagged_as_built_on_incomplete_history(story):
    code, states = story["next_run"]
    state = story["next_state"]
    manifest = story["next_manifest"]
    assert code == 0 and states["switch_online"] == "success"
    assert states["ingest_transactions.wait_for_transactions"] == "success"
    assert state["features"] > 0
    assert state["incomplete_history"] is True
    assert f"transactions-{QUARANTINED}" in state["missing_batches"].split(",")
    assert manifest["incomplete_history"] is True
    assert f"transactions-{QUARANTINED}" in manifest["missing_batches"]


def test_release_marks_the_day_and_later_days_stale(story):
    assert story["stale"] == {QUARANTINED: True, LATE: True}


def test_rerun_after_release_makes_the_day_current_and_visible(story):
    code, states = story["rerun"]
    state = story["rerun_state"]
    assert code == 0, states
    assert list(state["revisions"].values()) == ["current"]
    assert state["current_rows"] == state["features"] > 0
    assert state["stale"] is False


def test_late_revision_is_picked_up_and_the_later_day_recomputed(story):
    code, states = story["late_rerun"]
    before, after = story["next_state"], story["late_state"]
    assert code == 0, states
    assert sorted(after["revisions"].values()) == ["current", "superseded"]
    assert after["current_rows"] == before["current_rows"]
    assert after["features"] == after["current_rows"] == after["rows_to_score"]
    # Cutoff D's snapshot is recomputed from the current revisions (the released day and the
    # corrected amounts included).
    assert after["snapshot_txn_7d"] == after["raw_7d"] != before["snapshot_txn_7d"]
    assert float(after["snapshot_amount_7d"]) == pytest.approx(float(after["raw_amount_7d"]))
    assert float(after["snapshot_amount_7d"]) != pytest.approx(float(before["snapshot_amount_7d"]))
    assert after["incomplete_history"] is False and after["missing_batches"] is None
    assert after["stale"] is False
    assert story["late_manifest"]["incomplete_history"] is False
    assert story["late_manifest"]["missing_batches"] == []


def test_push_online_false_exports_but_leaves_redis_alone(story):
    _, states = story["late_rerun"]
    assert states["online.export_snapshot"] == "success"
    assert states["online.push_staged"] == "skipped"
    assert states["switch_online"] == "skipped"
    assert story["late_manifest"]["export_id"] != story["next_manifest"]["export_id"]


def test_backfill_fails_at_once_naming_the_paused_nightly_it_would_wait_for(story):
    code, output, states = story["paused_backfill"]
    assert code != 0
    assert states["validate_range"] == "failed" and states["create_backfill"] == "upstream_failed"
    assert "fraud_nightly is paused" in output
    assert "mlpipeline airflow dags unpause fraud_nightly" in output


def test_backfill_refuses_a_reversed_range_before_any_run(story):
    assert story["backfill_code"] != 0
    assert story["backfill_states"]["validate_range"] == "failed"
    assert story["backfill_states"]["create_backfill"] == "upstream_failed"
