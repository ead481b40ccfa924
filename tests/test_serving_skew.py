"""Training/serving skew replayed from the request log: a real scored day (test_score's stand-in
feature rows in the warehouse, a logistic regression registered in MLflow, `score.score_day`
publishing the Delta score table), its requests written by the real `RequestLog` as the service
would have logged them, with planted differences each flagged exactly where it was planted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import from_settings
from mlpipeline.monitoring.conf import CheckThresholds, MonitoringConf
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.monitoring.monitor import monitor_day
from mlpipeline.monitoring.serving_skew import (
    SERVING_SKEW,
    day_rows,
    day_scores,
    mismatched,
    skew_rows,
)
from mlpipeline.scoring import score
from mlpipeline.scoring.request_log import RequestLog, served_record
from mlpipeline.scoring.schemas import ScoreResult, Transaction
from mlpipeline.scoring.score_table import read_scores
from mlpipeline.training import model_registry
from tests.champion import register_champion
from tests.test_score import DAY1, DAY2, FEATURES_SQL

ONLINE = ("txn_count_24h", "amount_mean_30d", "usual_country")
REQUESTED = 200  # the first transactions of DAY1 (of 2,600): most traffic is batch-only
LEVELS = CheckThresholds(warning=0.0001, failure=0.01)
# Planted, each on its own requests (the transaction's index i; i % 10 == 0 has no snapshot).
CODE_SKEW = (1, 2, 3)  # amount_mean_30d served 0.5 higher, on the rule's snapshot
TIMING = (11, 12, 13, 14)  # served the previous snapshot: other features and score too
ROUNDING = 15  # amount_mean_30d off by 1e-12 relative: within tolerance
SCORE_SHIFT, FLIP, OTHER_VERSION = 21, 22, 23


@dataclass(frozen=True)
class Scored:
    settings: Settings
    version: str


@pytest.fixture()
def scored(settings: Settings) -> Iterator[Scored]:
    """DAY1's stand-in feature rows scored by a registered champion into the score table."""
    with warehouse.connect(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        con.execute(FEATURES_SQL)
        frame = con.execute("SELECT * FROM features.transaction_features").df()
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["amount", "txn_count_24h", "amount_mean_30d"])]
    )
    model = Pipeline([("columns", columns), ("clf", LogisticRegression())])
    model.fit(frame, (frame["amount"] > 600).astype(int))
    version = register_champion(settings, model, DAY1 - timedelta(days=1))
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    assert champion is not None
    score.score_day(
        DAY1,
        settings=settings,
        champion=champion,
        load_model=model_registry.load_model,
        run_id="skew",
    )
    yield Scored(settings, version)


def _log_requests(settings: Settings, version: str) -> None:
    """DAY1's first transactions as the service logs them, differences planted, plus two
    transactions batch scoring never saw."""
    with warehouse.connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT * FROM features.transaction_features WHERE dt = ? "
            "ORDER BY transaction_id LIMIT ?",
            [DAY1, REQUESTED],
        ).df()
    rows = rows.astype(object).where(rows.notna(), None)  # Python values, nulls as None
    scores = read_scores(settings, DAY1).set_index("transaction_id")
    log = RequestLog(from_settings(settings), queue_size=1000, batch_size=64, flush_seconds=0.05)
    for i, row in rows.iterrows():
        batch = scores.loc[row["transaction_id"]]
        cutoff = row["snapshot_cutoff"] and row["snapshot_cutoff"].date()
        features = _served(row)
        result = {"score": float(batch["score"]), "decision": bool(batch["decision"])}
        result["version"] = version
        if i in CODE_SKEW:
            features["amount_mean_30d"] += 0.5
        if i == ROUNDING:
            features["amount_mean_30d"] *= 1 + 1e-12
        if i in TIMING:
            cutoff -= timedelta(days=1)
            features["txn_count_24h"] += 1
            result["score"] += 0.1
        if i == SCORE_SHIFT:
            result["score"] += 1e-3
        if i == FLIP:
            result["decision"] = not result["decision"]
        if i == OTHER_VERSION:
            result["version"], result["score"] = "99", result["score"] + 0.2
        log.record(_record(row.to_dict(), features, result, cutoff))
    for unknown in ("tx-unknown-1", "tx-unknown-2"):
        unseen = {**rows.iloc[1].to_dict(), "transaction_id": unknown}
        log.record(_record(unseen, _served(rows.iloc[1]), result, None))
    log.close()
    assert log.stats().written == REQUESTED + 2


def _served(row: pd.Series) -> dict[str, Any]:
    return {name: row[name] for name in ONLINE}


def _record(
    row: dict[str, Any], features: dict[str, Any], result: dict[str, Any], cutoff: Any
) -> dict[str, Any]:
    transaction = Transaction.model_validate(
        {**{k: row[k] for k in Transaction.model_fields if k != "event_ts"}}
        | {"amount": float(row["amount"]), "event_ts": row["event_ts"].isoformat()}
    )
    answer = ScoreResult(
        transaction_id=transaction.transaction_id,
        customer_id=transaction.customer_id,
        score=result["score"],
        decision=result["decision"],
        decision_threshold=0.5,
        model_name=model_registry.MODEL_NAME,
        model_version=result["version"],
        snapshot_cutoff=None if cutoff is None else cutoff.isoformat(),
        snapshot_export_id="export-1",
        customer_known=True,
    )
    requested = row["event_ts"].to_pydatetime().replace(tzinfo=UTC)
    return served_record(requested, transaction.model_dump(), features, answer.model_dump())


@pytest.mark.integration
def test_planted_skew_is_flagged_exactly_where_planted(scored: Scored) -> None:
    _log_requests(scored.settings, scored.version)
    # The stage's entry point (the version has no training split: the drift checks have no
    # reference, the replay does not need one), its rows as published in the metrics table.
    summary = monitor_day(scored.settings, DAY1)
    published = read_metrics(scored.settings, DAY1)
    table = published[published["check"] == SERVING_SKEW].set_index("feature_or_metric")
    assert set(table.index) == {
        *ONLINE,
        "score_diff",
        "decision_flips",
        "snapshot_timing",
        "other_model_version",
        "unmatched_requests",
    }
    on_rule = REQUESTED - len(TIMING)
    # Code skew: only the altered feature, only its three requests (rounding noise passes).
    assert table.loc["amount_mean_30d", "method"].startswith(f"3 of {on_rule} ")
    assert table.loc["amount_mean_30d", "value"] == pytest.approx(3 / on_rule)
    assert table.loc["amount_mean_30d", "status"] == "failed"
    for name in ("txn_count_24h", "usual_country"):
        assert (table.loc[name, "value"], table.loc[name, "status"]) == (0.0, "ok"), name
    # Scores: same snapshot and version only; the other version is counted apart.
    compared = on_rule - 1
    for metric in ("score_diff", "decision_flips"):
        assert table.loc[metric, "rows_current"] == compared
        assert table.loc[metric, "value"] == pytest.approx(1 / compared), metric
        assert table.loc[metric, "status"] == "warning", metric
    assert table.loc["other_model_version", "method"].startswith("1 scored by versions ['99']")
    assert table.loc["other_model_version", "status"] == "ok"
    # Switch timing: the four requests on the previous snapshot, older: informational ok.
    timing = table.loc["snapshot_timing"]
    assert timing["value"] == pytest.approx(len(TIMING) / REQUESTED)
    assert "4 older (late switch), 0 newer" in timing["method"]
    assert timing["status"] == "ok"
    unmatched = table.loc["unmatched_requests"]
    assert unmatched["method"].startswith(f"2 of {REQUESTED + 2} requests have no batch row")
    assert f"{2600 - REQUESTED} of 2600 batch rows never requested" in unmatched["method"]
    assert unmatched["status"] == "warning"
    assert (table["rows_reference"] == 2600).all()
    assert (table["model_version"] == scored.version).all()
    assert summary.status == "failed"
    text = summary.text()
    assert "amount_mean_30d" in text and "txn_count_24h" not in text


@pytest.mark.unit
def test_a_day_without_requests_has_no_reference(settings: Settings) -> None:
    rows = day_rows(settings, from_settings(settings), DAY2, day_scores(settings, DAY2), LEVELS)
    assert rows == [
        {
            "check": SERVING_SKEW,
            "feature_or_metric": "unmatched_requests",
            "method": None,
            "value": None,
            "threshold": None,
            "drifted": None,
            "status": "no_reference",
            "reference": f"no /score request logged for {DAY2}",
        }
    ]


@pytest.mark.unit
def test_shipped_thresholds_grade_one_skewed_request_in_a_hundred_as_failed() -> None:
    levels = MonitoringConf.load().checks[SERVING_SKEW]
    assert (levels.status(0.0), levels.status(0.001), levels.status(0.01)) == (
        "ok",
        "warning",
        "failed",
    )


@pytest.mark.unit
def test_values_compare_by_type_nulls_equal_only_nulls() -> None:
    cases = [
        ([1, 2, None], [1, 3, None], "Int64", [False, True, False]),
        (
            [1.0, 1e12, 1e12, 0.0],
            [1 + 1e-12, 1e12 + 1, 1e12 + 1e4, 1e-8],
            "float64",
            [False, False, True, True],
        ),
        (["DE", None, "FR"], ["DE", "NL", None], "object", [False, True, True]),
        ([True, False], [True, True], "bool", [False, True]),
    ]
    for served, batch, dtype, expected in cases:
        got = mismatched(pd.Series(served, dtype=dtype), pd.Series(batch, dtype=dtype))
        assert got.tolist() == expected, dtype
    days = pd.Series([date(2026, 1, 4), None, date(2026, 1, 4)], dtype=object)
    rule = pd.to_datetime(pd.Series(["2026-01-04", None, "2026-01-03"]))
    assert mismatched(days, rule).tolist() == [False, False, True]


@pytest.mark.unit
def test_a_snapshot_newer_than_the_rule_warns() -> None:
    requests = pd.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "score": [0.1, 0.2],
            "decision": [False, False],
            "model_version": ["1", "1"],
            "snapshot_cutoff": ["2026-01-05", "2026-01-04"],
            "feature_n": [5, 6],
        }
    )
    batch = requests.rename(columns={"feature_n": "n"}).assign(
        snapshot_cutoff=pd.to_datetime(["2026-01-04", "2026-01-04"]), n=[7, 6]
    )
    rows = {r["feature_or_metric"]: r for r in skew_rows(requests, batch, 10, DAY1, LEVELS)}
    assert rows["snapshot_timing"]["status"] == "warning"
    assert "0 older (late switch), 1 newer" in rows["snapshot_timing"]["method"]
    # Request a's feature differs, but on another snapshot than the rule's: not code skew.
    assert (rows["n"]["value"], rows["n"]["rows_current"], rows["n"]["status"]) == (0.0, 1, "ok")
    assert rows["unmatched_requests"]["status"] == "ok"
