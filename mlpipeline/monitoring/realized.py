"""Realized performance: how a model version's scores rank the frauds that chargebacks revealed.

Labels arrive weeks after scoring: a chargeback may be reported up to `label_maturity_days`
after its transaction, so a day's labels are partial until then and recall or PR AUC measured
early are biased low. The check therefore pools the version's scored days, newest first, until
the pool holds `min_frauds` known frauds (one day rarely holds enough), preferring days whose
labels have matured. A matured pool is compared with the version's test metrics (measured on
matured labels too) and with the promotion floors. An immature pool is compared with the same
test metrics re-measured at its label coverage (`reference.coverage_test_metrics`: the test rows
labelled only with the chargebacks reported as soon after their transaction as the pool's
youngest day has had), so partial labels bias both sides alike; the floors, set for matured
labels, wait for maturity. Too few frauds are reported `pending`, never graded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.monitoring.checks import Row, relative_drop_row
from mlpipeline.monitoring.conf import CheckThresholds, RealizedConf
from mlpipeline.scoring.score_table import ScoreTableNotFound, open_score_table

REALIZED = "realized_performance"
PENDING = "pending"
# The version's test metrics each realized metric is compared with (evaluation logs them).
COMPARED = {
    "roc_auc": "test_roc_auc",
    "pr_auc": "test_pr_auc",
    "recall": "test_at_threshold_recall",
    "precision": "test_at_threshold_precision",
}
# The current chargebacks, first report per transaction, as the night's dbt build left them
# (dbt_project/models/staging/stg_chargebacks.sql): the raw view would look every one up in the
# whole transaction history on each read.
CHARGEBACKS = "staging.stg_chargebacks"
# The version's scores within the scanned days, each labelled with the chargebacks reported
# before the end of the run day; DuckDB streams the score table's files through it, so only
# the aggregate or the rows asked for are ever held in memory.
_LABELLED = f"""
SELECT dt, score, decision, (transaction_id IN (
    SELECT transaction_id FROM {CHARGEBACKS} WHERE reported_at < $known_before
))::INTEGER AS is_fraud
FROM version_scores WHERE model_version = $version AND dt BETWEEN $first AND $last
"""


@dataclass(frozen=True)
class Pool:
    """The scored days pooled for one measurement and their labelled rows."""

    days: list[date]
    rows: pd.DataFrame  # dt, score, decision, is_fraud
    label_age_days: int  # the youngest pooled day's age on the run day: its labels' age
    maturity_days: int

    @classmethod
    def of(cls, days: list[date], rows: pd.DataFrame, run_day: date, maturity_days: int) -> Pool:
        """The pool of `days` (newest first) and their rows, as labelled on `run_day`."""
        age = min((run_day - day).days for day in days) if days else 0
        return cls(days, rows, age, maturity_days)

    @property
    def coverage(self) -> float:
        """The youngest pooled day's age over label_maturity_days, at most 1."""
        return min(self.label_age_days / self.maturity_days, 1.0)

    @property
    def frauds(self) -> int:
        return int(self.rows["is_fraud"].sum())

    @property
    def matured(self) -> bool:
        return self.coverage >= 1.0

    def measurable(self, conf: RealizedConf) -> bool:
        """Enough frauds to measure, and at least one negative (AUCs need both classes)."""
        return conf.min_frauds <= self.frauds < len(self.rows)

    def describe(self) -> str:
        span = f"{self.days[-1]}..{self.days[0]}" if self.days else "no day"
        return f"{len(self.days)} scored day(s) {span}, label coverage {self.coverage:.0%}"


def pooled_scores(
    settings: Settings, version: str, run_day: date, maturity_days: int, conf: RealizedConf
) -> Pool:
    """The pool of the version's scored days before `run_day` within the lookback, labelled with
    the chargebacks reported by the end of `run_day` (what the warehouse knows then): frauds are
    counted per day in the scan, then only the pooled days' rows are read."""
    first = run_day - timedelta(days=conf.lookback_days)
    per_day = _scan(settings, version, run_day, first, run_day, grouped=True)
    frauds = per_day.set_index("dt")["frauds"] if not per_day.empty else pd.Series(dtype=int)
    days = choose_days(frauds, run_day, maturity_days, conf)
    rows = (
        _scan(settings, version, run_day, days[-1], days[0], grouped=False)
        if days
        else pd.DataFrame(columns=["dt", "score", "decision", "is_fraud"])
    )
    return Pool.of(days, rows, run_day, maturity_days)


def _scan(
    settings: Settings, version: str, run_day: date, first: date, last: date, *, grouped: bool
) -> pd.DataFrame:
    """The labelled scores of days [first, last]: the frauds per day, or the rows."""
    try:
        table = open_score_table(settings)
    except ScoreTableNotFound:
        return pd.DataFrame(columns=["dt", "frauds"])
    scores = table.to_pyarrow_dataset(
        file_pruning_predicate=[("dt", ">=", first), ("dt", "<=", last)]
    )
    query = f"SELECT dt, sum(is_fraud) AS frauds FROM ({_LABELLED}) GROUP BY dt"
    params = {
        "known_before": run_day + timedelta(days=1),
        "version": version,
        "first": first,
        "last": last,
    }
    with warehouse.connect(settings, read_only=True) as con:
        con.register("version_scores", scores)
        frame = con.execute(query if grouped else _LABELLED, params).df()
    frame["dt"] = pd.to_datetime(frame["dt"]).dt.date
    return frame


def choose_days(
    frauds_per_day: pd.Series, run_day: date, maturity_days: int, conf: RealizedConf
) -> list[date]:
    """The newest matured days holding `min_frauds` frauds; without enough of them, the newest
    days at least `min_label_age_days` old; the pool grows a day at a time, newest first, so
    its days are every scored day between its oldest and its newest."""
    ages = {day: (run_day - day).days for day in frauds_per_day.index}
    matured = _newest([d for d, a in ages.items() if a >= maturity_days], frauds_per_day, conf)
    if sum(int(frauds_per_day[day]) for day in matured) >= conf.min_frauds:
        return matured
    early = [d for d, a in ages.items() if a >= conf.min_label_age_days]
    return _newest(early, frauds_per_day, conf)


def _newest(days: list[date], frauds_per_day: pd.Series, conf: RealizedConf) -> list[date]:
    pooled: list[date] = []
    frauds = 0
    for day in sorted(days, reverse=True):
        pooled.append(day)
        frauds += int(frauds_per_day[day])
        if frauds >= conf.min_frauds:
            break
    return pooled


def measured(rows: pd.DataFrame) -> dict[str, float]:
    """ROC AUC and PR AUC of the scores, recall and precision of the decisions, on labelled
    rows (score, decision, is_fraud)."""
    y = rows["is_fraud"].to_numpy(dtype=int)
    scores = rows["score"].to_numpy(dtype=float)
    flagged = rows["decision"].to_numpy(dtype=bool)
    caught = int(np.sum(flagged & (y == 1)))
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "recall": caught / max(int(y.sum()), 1),
        "precision": caught / max(int(flagged.sum()), 1),
    }


def realized_rows(
    pool: Pool,
    expected: dict[str, float] | None,
    floors: dict[str, float],
    levels: CheckThresholds,
    conf: RealizedConf,
) -> list[Row]:
    """The pool's rows: its frauds and coverage, each metric against its `expected` value (the
    version's test metrics at the pool's coverage: on matured labels for a matured pool; None
    when they cannot be measured at it, which leaves the metrics `pending`), and each promotion
    floor on matured labels only."""
    base = {"check": REALIZED, "reference": pool.describe(), "rows_current": len(pool.rows)}
    rows: list[Row] = [
        {
            **base,
            "feature_or_metric": "frauds",
            "method": "known frauds in the pool",
            "value": float(pool.frauds),
            "threshold": float(conf.min_frauds),
            "drifted": None,
            "status": "ok" if pool.frauds >= conf.min_frauds else PENDING,
        },
        {
            **base,
            "feature_or_metric": "label_coverage",
            "method": "youngest day's age / label maturity",
            "value": pool.coverage,
            "threshold": 1.0,
            "drifted": None,
            "status": "ok" if pool.matured else PENDING,
        },
    ]
    if not pool.measurable(conf):
        return rows  # too few labels to measure (or no negatives): the two rows say so
    values = measured(pool.rows)
    against = (
        "matured labels"
        if pool.matured
        else f"label age {pool.label_age_days}d ({pool.coverage:.0%} coverage)"
    )
    for metric, test_name in COMPARED.items():
        if expected is None:
            row = _ungraded(metric, values[metric], f"no test fraud known at {against}")
        else:
            row = relative_drop_row(
                REALIZED, metric, values[metric], expected.get(test_name), levels
            )
            if row["method"] is not None:
                row["method"] += f" (test {against})"
        rows.append({**base, **row})
    if pool.matured:
        for metric, floor in floors.items():
            if metric in values:
                below = values[metric] < floor
                rows.append(
                    {
                        **base,
                        "feature_or_metric": f"{metric}_floor",
                        "method": "realized value against the promotion floor",
                        "value": values[metric],
                        "threshold": floor,
                        "drifted": below,
                        "status": "failed" if below else "ok",
                    }
                )
    return rows


def _ungraded(metric: str, value: float, why: str) -> Row:
    return {
        "check": REALIZED,
        "feature_or_metric": metric,
        "method": f"not graded: {why}",
        "value": value,
        "threshold": None,
        "drifted": None,
        "status": PENDING,
    }
