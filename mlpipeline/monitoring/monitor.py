"""Monitor one scored day: its inputs and scores against the model version that scored it.

`monitor_day` is the stage's one entry point (the nightly calls it after scoring): it reads the
day's scores from the score table, the version's reference (`reference`), the day's feature
rows from the warehouse (a bounded sample on large days), computes the checks, replays the day's
logged `/score` requests against its batch rows (`serving_skew`), measures how fresh its online
snapshot and batches were (`freshness`) and replaces the run day's rows of the metrics table.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

import pandas as pd

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import from_settings
from mlpipeline.ingest.gates import label_maturity_days
from mlpipeline.monitoring import checks, freshness, metrics_table, realized, serving_skew
from mlpipeline.monitoring.conf import MonitoringConf
from mlpipeline.monitoring.model_inputs import column_kinds, monitored_frame
from mlpipeline.monitoring.reference import (
    ReferenceUnavailable,
    VersionReference,
    coverage_test_metrics,
    load_reference,
)
from mlpipeline.monitoring.summary import MonitoringSummary
from mlpipeline.scoring.model_scores import FEATURES_TABLE
from mlpipeline.training.evaluate import EvaluationRules
from mlpipeline.warehouse.meta import utcnow

log = logging.getLogger(__name__)


def monitor_day(
    settings: Settings,
    day: str | date | datetime,
    *,
    run_day: str | date | None = None,
    conf: MonitoringConf | None = None,
    graded_freshness: bool = False,
) -> MonitoringSummary:
    """Compute scored day `day`'s checks and publish them as run day `run_day` (default `day`);
    `conf` defaults to pipeline.yaml's `monitoring:`. Freshness is graded only when
    `graded_freshness` says this is the scheduled nightly's run of the day (`freshness`)."""
    day = parse_day(day)
    run_day = parse_day(run_day) if run_day is not None else day
    conf = conf or MonitoringConf.load()
    scores = serving_skew.day_scores(settings, day)  # read once: the checks and the replay
    versions = sorted(scores["model_version"].unique())
    if len(versions) > 1:
        raise ValueError(
            f"the score table holds {day} scored by versions {versions}; a day is scored by one "
            "version. Re-run scoring for the day, then monitoring."
        )
    version = versions[0] if versions else None
    try:
        if version is None:
            raise ReferenceUnavailable(
                f"no scores for {day} in the score table (no model yet, or the day was not scored)"
            )
        reference = load_reference(settings, version)
        rows = _compare(settings, day, reference, scores, conf)
        rows += _realized(settings, run_day, reference, conf)
    except ReferenceUnavailable as exc:
        log.warning("monitoring %s: no reference: %s", day, exc)
        rows = checks.no_reference_rows(str(exc))
    store = from_settings(settings)
    rows += serving_skew.day_rows(
        settings, store, day, scores, conf.checks[serving_skew.SERVING_SKEW]
    )
    rows += freshness.day_rows(settings, store, day, run_day, conf, graded=graded_freshness)
    computed_at = utcnow()
    table = metrics_table.metrics_table(
        [
            {
                "reference": None,
                "rows_current": None,
                "rows_reference": None,
                **row,
                "run_day": run_day,
                "scored_day": day,
                "model_version": version,
                "computed_at": computed_at,
            }
            for row in rows
        ]
    )
    metrics_table.publish(settings, run_day, table)
    summary = MonitoringSummary.from_rows(table.to_pandas())
    log.info("%s", summary.text())
    return summary


def _compare(
    settings: Settings,
    day: date,
    reference: VersionReference,
    scores: pd.DataFrame,
    conf: MonitoringConf,
) -> list[dict[str, Any]]:
    seed = conf.sample_seed
    training = reference.training_rows
    if len(training) > conf.sample_rows:
        training = training.sample(conf.sample_rows, random_state=seed)
    current = _day_features(settings, day, reference.columns.inputs, conf)
    kinds = column_kinds(reference.columns, training)
    rows = [
        {
            **row,
            "reference": reference.inputs_text,
            "rows_current": len(current),
            "rows_reference": len(training),
        }
        for row in checks.input_drift_rows(
            monitored_frame(training, reference.columns),
            monitored_frame(current, reference.columns),
            kinds,
            conf,
        )
    ]
    if reference.validation_scores is None:
        rows.append(
            checks.no_reference_row(checks.PREDICTION_DRIFT, "score", reference.scores_text)
        )
        return rows
    prediction = checks.prediction_drift_rows(
        reference.validation_scores,
        scores["score"].to_numpy(dtype=float),
        scores["decision"].to_numpy(dtype=bool),
        reference.decision_threshold,
        conf,
    )
    rows += [
        {
            **row,
            "reference": reference.scores_text,
            "rows_current": len(scores),
            "rows_reference": len(reference.validation_scores),
        }
        for row in prediction
    ]
    return rows


def _realized(
    settings: Settings, run_day: date, reference: VersionReference, conf: MonitoringConf
) -> list[dict[str, Any]]:
    """The version's realized performance on the labels known at the end of the run day,
    against its test metrics at the pool's label coverage."""
    maturity = label_maturity_days(settings)
    pool = realized.pooled_scores(settings, reference.version, run_day, maturity, conf.realized)
    expected: dict[str, float] | None = reference.test_metrics
    if pool.measurable(conf.realized) and not pool.matured:
        expected = coverage_test_metrics(settings, reference, pool.label_age_days)
    return realized.realized_rows(
        pool,
        expected,
        EvaluationRules.from_conf().floors,
        conf.checks["realized_performance"],
        conf.realized,
    )


def _day_features(
    settings: Settings, day: date, columns: tuple[str, ...], conf: MonitoringConf
) -> pd.DataFrame:
    """The day's feature rows (the rows scoring scored), at most `sample_rows` of them."""
    names = ", ".join(f'"{name}"' for name in columns)
    sample = f"USING SAMPLE reservoir({conf.sample_rows} ROWS) REPEATABLE ({conf.sample_seed})"
    with warehouse.connect(settings, read_only=True) as con:
        frame = con.execute(
            f"SELECT * FROM (SELECT {names} FROM {FEATURES_TABLE} WHERE dt = ?) {sample}", [day]
        ).df()
    if frame.empty:
        raise RuntimeError(
            f"{FEATURES_TABLE} has no rows for {day}, yet the score table has scores for it: "
            "the day's features were rebuilt or removed after scoring. Rebuild the day's "
            "features, re-run scoring for it, then monitoring."
        )
    return frame
