"""Realized performance: how a model version's scores rank the frauds that chargebacks revealed.

Labels arrive weeks after scoring: a chargeback may be reported up to `label_maturity_days`
after its transaction, so a day's labels are partial until then and recall or PR AUC measured
early are biased low. The check therefore pools the version's scored days, newest first, until
the pool holds `min_frauds` known frauds (one day rarely holds enough), preferring days whose
labels have matured; only a matured pool is compared with the version's test metrics (measured
on matured labels too) and with the promotion floors. An immature pool is reported with its
label coverage and status `pending`, never graded.
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


@dataclass(frozen=True)
class Pool:
    """The scored days pooled for one measurement and their labelled rows."""

    days: list[date]
    rows: pd.DataFrame  # score, decision, is_fraud
    coverage: float  # the youngest pooled day's age over label_maturity_days, at most 1

    @property
    def frauds(self) -> int:
        return int(self.rows["is_fraud"].sum())

    @property
    def matured(self) -> bool:
        return self.coverage >= 1.0

    def describe(self) -> str:
        span = f"{self.days[-1]}..{self.days[0]}" if self.days else "no day"
        return f"{len(self.days)} scored day(s) {span}, label coverage {self.coverage:.0%}"


def labelled_scores(
    settings: Settings, version: str, run_day: date, lookback_days: int
) -> pd.DataFrame:
    """The version's scores of the days before `run_day` within the lookback, each labelled with
    the chargebacks reported by the end of `run_day` (what the warehouse knows then)."""
    try:
        table = open_score_table(settings)
    except ScoreTableNotFound:
        return pd.DataFrame(columns=["dt", "transaction_id", "score", "decision", "is_fraud"])
    scores = table.to_pandas(
        columns=["dt", "transaction_id", "score", "decision"],
        filters=[
            ("model_version", "=", version),
            ("dt", ">=", run_day - timedelta(days=lookback_days)),
            ("dt", "<=", run_day),
        ],
    )
    cutoff = run_day + timedelta(days=1)
    with warehouse.connect(settings, read_only=True) as con:
        frauds = con.execute(
            "SELECT DISTINCT transaction_id FROM raw.chargebacks_current WHERE reported_at < ?",
            [cutoff],
        ).fetchall()
    known = {transaction for (transaction,) in frauds}
    scores["is_fraud"] = scores["transaction_id"].isin(known).astype(int)
    scores["dt"] = pd.to_datetime(scores["dt"]).dt.date
    return scores


def choose_pool(rows: pd.DataFrame, run_day: date, maturity_days: int, conf: RealizedConf) -> Pool:
    """The newest matured days holding `min_frauds` frauds; without enough of them, the newest
    days at least `min_label_age_days` old (pending); the pool grows a day at a time."""
    frauds = rows.groupby("dt")["is_fraud"].sum()  # once: the pools below only add them up
    ages = {day: (run_day - day).days for day in frauds.index}
    matured = _pool(
        rows, frauds, [d for d, a in ages.items() if a >= maturity_days], ages, maturity_days, conf
    )
    if matured.frauds >= conf.min_frauds:
        return matured
    early = [d for d, a in ages.items() if a >= conf.min_label_age_days]
    return _pool(rows, frauds, early, ages, maturity_days, conf)


def _pool(
    rows: pd.DataFrame,
    frauds_per_day: pd.Series,
    days: list[date],
    ages: dict[date, int],
    maturity: int,
    conf: RealizedConf,
) -> Pool:
    pooled: list[date] = []
    frauds = 0
    for day in sorted(days, reverse=True):
        pooled.append(day)
        frauds += int(frauds_per_day[day])
        if frauds >= conf.min_frauds:
            break
    coverage = min((ages[d] / maturity for d in pooled), default=0.0)
    return Pool(pooled, rows[rows["dt"].isin(pooled)], min(coverage, 1.0))


def measured(pool: Pool) -> dict[str, float]:
    """ROC AUC and PR AUC of the scores, recall and precision of the decisions, on the pool."""
    y = pool.rows["is_fraud"].to_numpy(dtype=int)
    scores = pool.rows["score"].to_numpy(dtype=float)
    flagged = pool.rows["decision"].to_numpy(dtype=bool)
    caught = int(np.sum(flagged & (y == 1)))
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "recall": caught / max(int(y.sum()), 1),
        "precision": caught / max(int(flagged.sum()), 1),
    }


def realized_rows(
    pool: Pool,
    test_metrics: dict[str, float],
    floors: dict[str, float],
    levels: CheckThresholds,
    conf: RealizedConf,
) -> list[Row]:
    """The pool's rows: its frauds and coverage, each metric against the version's test value
    (graded on a matured pool, `pending` otherwise), and each promotion floor on matured labels."""
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
    if pool.frauds < conf.min_frauds or pool.frauds == len(pool.rows):
        return rows  # too few labels to measure (or no negatives): the two rows say so
    values = measured(pool)
    for metric, test_name in COMPARED.items():
        row = relative_drop_row(
            REALIZED, metric, values[metric], test_metrics.get(test_name), levels
        )
        if not pool.matured:
            row |= {"status": PENDING, "drifted": None}
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
