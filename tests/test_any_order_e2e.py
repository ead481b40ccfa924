"""Any order, same result: four days processed newest first, then every stale day re-run, end
where processing them in order ends.

Two copies of the session's history (tests/history.py) get the same four new days. One runs them
in order with the nightly's stage calls. The other runs them newest first: its chargebacks name
transactions of days not loaded yet, so they wait (`meta.pending_rows`); the oldest day goes
through a real `fraud_nightly` DAG run, whose promotions mark the later days stale; then the
stale days are re-run oldest first until none is left. Training is off (the champion, registered
once in each copy, never changes). Compared, sorted and ignoring ids, timestamps and history:
the current raw rows, the features, the score table's rows (scores to 1e-12) and the current
online snapshot's entity → feature values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlpipeline import online
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools import local_airflow
from mlpipeline.devtools.generate import generate_range
from mlpipeline.ingest import batches
from mlpipeline.pipeline import nightly
from mlpipeline.scoring.score_table import read_scores
from mlpipeline.warehouse import connect
from tests.champion import register_champion
from tests.e2e_env import pipeline_env, private_redis
from tests.history import CUSTOMERS, NIGHT, copy_history

pytestmark = pytest.mark.e2e

DAYS = [NIGHT + timedelta(days=offset) for offset in range(4)]
NUMERIC = ["amount", "txn_count_24h", "txn_count_7d", "amount_mean_30d", "chargebacks_30d"]
CATEGORICAL = ["channel", "merchant_category"]
# Lineage and run columns: they name runs and times, not business content.
VOLATILE = {"dbt_invocation_id", "built_at", "scoring_run_id", "scored_at", "batch_id", "revision"}


def _register_champion(settings: Settings) -> None:
    """A small model fitted on the history's features, the champion of this copy's registry."""
    with connect(settings, read_only=True) as con:
        frame = con.execute(
            "SELECT * REPLACE (amount::DOUBLE AS amount) FROM features.transaction_features "
            "WHERE dt < ?",
            [NIGHT],
        ).df()
    label = (frame["amount"] > frame["amount_mean_30d"].fillna(0) * 3).astype(int)
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    model = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=500))])
    model.fit(frame, label)
    register_champion(settings, model, NIGHT - timedelta(days=22), trusted_types=("numpy.dtype",))


def _run_day(day: date) -> None:
    """What one fraud_nightly run does, training off, as the DAG's tasks call it."""
    run_id = f"stages__{day}"
    for dataset in nightly.DATASETS:
        prepared = nightly.prepare(dataset, day.isoformat())
        nightly.load(prepared, run_id)
        nightly.check_raw(prepared, run_id)
        nightly.promote(prepared, run_id)
    nightly.build_features(day.isoformat())
    nightly.check_snapshot(day.isoformat(), run_id)
    export = nightly.export_snapshot(day.isoformat())
    nightly.push_staged(export)
    verified = nightly.verify_staged(export)
    try:
        nightly.switch_online(export, verified)
    except nightly.NothingToDo:
        pass
    nightly.score(day.isoformat(), run_id)


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    names = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema || '.' || table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        if name not in VOLATILE
    ]
    return sorted(con.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall(), key=repr)


def _content(settings: Settings, redis_url: str) -> dict[str, Any]:
    with connect(settings) as con:
        content: dict[str, Any] = {
            table: _rows(con, table)
            for table in (
                "raw.transactions_current",
                "raw.chargebacks_current",
                "features.customer_snapshot",
                "features.transaction_features",
            )
        }
        content["revisions"] = sorted(batches.current_revisions(con, DAYS[-1]).items())
    scores = read_scores(settings).drop(columns=sorted(VOLATILE & {"scoring_run_id", "scored_at"}))
    content["scores"] = sorted(
        (tuple(str(v) for k, v in row.items() if k != "score"), row["score"])
        for row in scores.to_dict("records")
    )
    current = online.current_snapshot(redis_url)
    entities = sorted(
        {row[0] for row in content["features.customer_snapshot"] if str(row[1]) == str(DAYS[-1])}
    )
    vectors = online.OnlineReader(redis_url).get_many(entities)
    content["online"] = {
        "cutoff": current["cutoff"],
        "vectors": {
            e: {k: str(v) for k, v in vector.items()}
            for e, vector in zip(entities, vectors, strict=True)
        },
    }
    return content


def _state(settings: Settings) -> dict[str, Any]:
    with connect(settings) as con:
        return {
            "stale": batches.stale_days(con),
            "pending": con.execute("SELECT count(*) FROM meta.pending_rows").fetchone()[0],
            "chargebacks_visible": con.execute(
                "SELECT count(*) FROM raw.chargebacks_current WHERE dt >= ?", [DAYS[0]]
            ).fetchone()[0],
        }


@pytest.fixture(scope="module")
def stories(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, e2e_history: Path
) -> Iterator[dict[str, Any]]:
    results: dict[str, Any] = {}
    in_order = copy_history(e2e_history, tmp_path_factory.mktemp("in-order"))
    redis_url = private_redis(redis_server, 10)
    with pipeline_env(in_order, redis_url) as settings:
        generate_range(from_settings(settings), DAYS[0], DAYS[-1], customers=CUSTOMERS)
        _register_champion(settings)
        for day in DAYS:
            _run_day(day)
        results["in_order"] = {"content": _content(settings, redis_url), **_state(settings)}

    shuffled = copy_history(e2e_history, tmp_path_factory.mktemp("newest-first"))
    redis_url = private_redis(redis_server, 11)
    with pipeline_env(shuffled, redis_url) as settings:
        generate_range(from_settings(settings), DAYS[0], DAYS[-1], customers=CUSTOMERS)
        _register_champion(settings)
        _run_day(DAYS[-1])
        results["after_newest"] = _state(settings)
        for day in reversed(DAYS[1:-1]):
            _run_day(day)
        env = local_airflow.airflow_env(settings)
        local_airflow.init(env)
        results["dag_exit"] = local_airflow.dags_test(
            "fraud_nightly", DAYS[0], env, conf={"train": False}
        )
        results["after_oldest"] = _state(settings)
        reruns = []
        while stale := _state(settings)["stale"]:
            assert len(reruns) < 3 * len(DAYS), f"stale days keep coming back: {reruns}"
            for day in stale:
                _run_day(day)
                reruns.append(day)
        results["reruns"] = reruns
        results["newest_first"] = {"content": _content(settings, redis_url), **_state(settings)}
    yield results


def test_chargebacks_processed_before_their_transactions_wait_instead_of_being_lost(stories):
    assert stories["after_newest"]["pending"] > 0
    assert stories["newest_first"]["pending"] == stories["in_order"]["pending"] == 0
    assert (
        stories["newest_first"]["chargebacks_visible"] == stories["in_order"]["chargebacks_visible"]
    )


def test_the_dag_run_of_an_older_day_marks_the_days_after_it_stale(stories):
    assert stories["dag_exit"] == 0
    assert stories["after_oldest"]["stale"] == DAYS[1:]
    assert stories["reruns"] == DAYS[1:]
    assert stories["newest_first"]["stale"] == stories["in_order"]["stale"] == []


@pytest.mark.parametrize(
    "part",
    [
        "revisions",
        "raw.transactions_current",
        "raw.chargebacks_current",
        "features.customer_snapshot",
        "features.transaction_features",
        "scores",
        "online",
    ],
)
def test_newest_first_then_stale_reruns_equal_an_in_order_run(stories, part):
    expected, actual = (
        stories["in_order"]["content"][part],
        stories["newest_first"]["content"][part],
    )
    assert expected, f"{part} is empty: the comparison would prove nothing"
    if part == "scores":
        expected, actual = _scores_apart(expected, actual)
    if isinstance(expected, list):
        actual_rows, expected_rows = set(actual), set(expected)
        missing = [row for row in expected if row not in actual_rows][:5]
        extra = [row for row in actual if row not in expected_rows][:5]
        assert (len(actual), missing, extra) == (len(expected), [], [])
    else:
        assert actual == expected


def _scores_apart(
    expected: list[tuple[tuple, float]], actual: list[tuple[tuple, float]]
) -> tuple[list[tuple], list[tuple]]:
    """Score rows as text; a score within 1e-12 of the other run's score for its row shows as
    that score.

    The champion's matrix products can round a row's last bit differently at another place in
    its chunk, and a DuckLake scan hands out a day's rows in the order its threads read them:
    a score may differ in its sixteenth digit, never more.
    """
    wanted = dict(expected)

    def shown(key: tuple, score: float) -> tuple:
        near = wanted.get(key)
        if near is not None and math.isclose(score, near, rel_tol=0, abs_tol=1e-12):
            score = near
        return (*key, repr(score))

    return [shown(key, score) for key, score in expected], [shown(k, s) for k, s in actual]
