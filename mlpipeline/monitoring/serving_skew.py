"""Training/serving skew on real traffic: the online service's logged `/score` requests of UTC
day D replayed against what batch scoring computed for the same transactions.

Both sides read one feature definition: batch scoring scores `features.transaction_features`,
whose online-feature columns are the values of the snapshot the as-of rule assigns (its
`snapshot_cutoff`: the latest cutoff whose snapshot is available, cutoff_ts +
publication_lag_hours, at the transaction's time), and the service reads the same export from
Redis. So on a request served that snapshot, any feature or score difference is code skew; a
request served another snapshot (the switch came later or earlier than the rule) is switch
timing and reported apart, as is a request scored by another model version (a promotion between
the request and the nightly).

Rows (check `serving_skew`), each against D's batch rows matched by `transaction_id`:

- one per served feature: the share of matched requests on the rule's snapshot whose value
  differs (nulls equal only nulls; numbers within FLOAT_TOLERANCE, absolute or relative, and
  integers exactly; anything else exactly), graded by `monitoring.checks.serving_skew`;
- `score_diff` (|online - batch| > SCORE_TOLERANCE) and `decision_flips`, on matched requests
  of the rule's snapshot and the batch's model version, graded the same way;
- `snapshot_timing`: the share of matched requests served another snapshot; `warning` when any
  was served a newer one than the rule allows (features published before the lag: the model
  saw values training never sees), else `ok` (a late switch, which the switch alerts on);
- `other_model_version`: the share of matched requests scored by another version, `ok`;
- `unmatched_requests`: the share of requests with no batch row of D (no transaction_id, a
  transaction never landed or landed on another day, test traffic), `warning` when any. D's
  batch rows never requested are no problem: most traffic is batch-only.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from pandas.api import types

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.monitoring.checks import Row, no_reference_row
from mlpipeline.monitoring.conf import CheckThresholds
from mlpipeline.scoring.model_scores import FEATURES_TABLE
from mlpipeline.scoring.request_log import FEATURE_PREFIX, read_requests
from mlpipeline.scoring.score_table import ScoreTableNotFound, open_score_table

SERVING_SKEW = "serving_skew"
FLOAT_TOLERANCE = 1e-9
SCORE_TOLERANCE = 1e-6
SCORE_DIFF, DECISION_FLIPS = "score_diff", "decision_flips"
SNAPSHOT_TIMING, OTHER_VERSION = "snapshot_timing", "other_model_version"
UNMATCHED = "unmatched_requests"
METRICS = (UNMATCHED, SNAPSHOT_TIMING, OTHER_VERSION, SCORE_DIFF, DECISION_FLIPS)
BATCH = "batch_"  # prefix of the batch side's columns once matched
BATCH_COLUMNS = ["transaction_id", "score", "decision", "model_version"]


def day_rows(
    settings: Settings,
    store: ObjectStore,
    day: date,
    scores: pd.DataFrame,
    levels: CheckThresholds,
) -> list[Row]:
    """Day `day`'s serving-skew rows: its logged requests against its batch rows (`scores`:
    `day_scores`)."""
    requests = read_requests(store, day)
    if requests.empty:
        return [no_reference_row(SERVING_SKEW, UNMATCHED, f"no /score request logged for {day}")]
    features = _requested_features(settings, day, requests["transaction_id"].dropna().unique())
    batch = scores.merge(features, on="transaction_id", how="inner")
    return skew_rows(requests, batch, len(scores), day, levels)


def skew_rows(
    requests: pd.DataFrame,
    batch: pd.DataFrame,
    batch_rows: int,
    day: date,
    levels: CheckThresholds,
) -> list[Row]:
    """The rows from the day's requests and the batch rows (transaction_id, score, decision,
    model_version, snapshot_cutoff and the feature columns) of the transactions requested;
    `batch_rows` counts all of D's batch rows."""
    matched = requests.merge(
        batch.add_prefix(BATCH),
        left_on="transaction_id",
        right_on=BATCH + "transaction_id",
        how="left",
        validate="many_to_one",
        indicator=True,
    )
    found = (matched.pop("_merge") == "both").to_numpy()
    reference = f"{len(requests)} requests logged on {day} against its batch rows"
    matched = matched[found]
    rows = [_unmatched_row(found, matched["transaction_id"].nunique(), batch_rows)]
    served = pd.to_datetime(matched["snapshot_cutoff"])
    rule = pd.to_datetime(matched[BATCH + "snapshot_cutoff"])
    on_rule = ((served == rule) | (served.isna() & rule.isna())).to_numpy()
    newer = ((served > rule) | (served.notna() & rule.isna())).to_numpy()
    rows.append(_timing_row(on_rule, newer))
    same_version = (matched["model_version"] == matched[BATCH + "model_version"]).to_numpy()
    rows.append(_version_row(same_version, matched))
    feature_base = matched[on_rule]
    for column in [c for c in requests.columns if c.startswith(FEATURE_PREFIX)]:
        name = column.removeprefix(FEATURE_PREFIX)
        batch_values = feature_base.get(BATCH + name, pd.Series(None, index=feature_base.index))
        differs = mismatched(feature_base[column], batch_values)
        rows.append(_graded(name, differs, "on the as-of snapshot", levels))
    scored = matched[on_rule & same_version]
    score_gap = np.abs(scored["score"].to_numpy(float) - scored[BATCH + "score"].to_numpy(float))
    of_scored = "on the as-of snapshot and the batch's model version"
    rows.append(_graded(SCORE_DIFF, score_gap > SCORE_TOLERANCE, of_scored, levels))
    flipped = scored["decision"].to_numpy(bool) != scored[BATCH + "decision"].to_numpy(bool)
    rows.append(_graded(DECISION_FLIPS, flipped, of_scored, levels))
    return [{"reference": reference, "rows_reference": batch_rows, **row} for row in rows]


def mismatched(served: pd.Series, batch: pd.Series) -> np.ndarray:
    """True where a served value differs from the batch value (aligned by position)."""
    served_null, batch_null = served.isna().to_numpy(), batch.isna().to_numpy()
    if _is_number(served) and _is_number(batch):
        a = served.to_numpy(dtype=float, na_value=np.nan)
        b = batch.to_numpy(dtype=float, na_value=np.nan)
        if types.is_integer_dtype(served) and types.is_integer_dtype(batch):
            equal = a == b
        else:
            scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
            equal = np.abs(a - b) <= FLOAT_TOLERANCE * scale
    elif _is_time(served) or _is_time(batch):
        equal = pd.to_datetime(served).to_numpy() == pd.to_datetime(batch).to_numpy()
    else:
        equal = served.astype(object).to_numpy() == batch.astype(object).to_numpy()
    both_null = served_null & batch_null
    return ~(both_null | (~served_null & ~batch_null & np.asarray(equal, dtype=bool)))


def _is_number(values: pd.Series) -> bool:
    return types.is_numeric_dtype(values) and not types.is_bool_dtype(values)


def _is_time(values: pd.Series) -> bool:
    present = values.dropna()
    return types.is_datetime64_any_dtype(values) or (
        not present.empty and isinstance(present.iloc[0], date)
    )


def _graded(metric: str, differs: np.ndarray, among: str, levels: CheckThresholds) -> Row:
    """The share of `differs`, graded; with nothing to compare the row has no reference."""
    if not differs.size:
        return no_reference_row(SERVING_SKEW, metric, f"no matched request {among}")
    share = float(differs.mean())
    return {
        "check": SERVING_SKEW,
        "feature_or_metric": metric,
        "method": f"{int(differs.sum())} of {differs.size} matched requests {among} differ",
        "value": share,
        "threshold": levels.warning,
        "drifted": share >= levels.warning,
        "status": levels.status(share),
        "rows_current": int(differs.size),
    }


def _informational(metric: str, flagged: np.ndarray, method: str, warn: bool) -> Row:
    share = float(flagged.mean()) if flagged.size else 0.0
    return {
        "check": SERVING_SKEW,
        "feature_or_metric": metric,
        "method": method,
        "value": share,
        "threshold": None,
        "drifted": bool(flagged.any()),
        "status": "warning" if warn else "ok",
        "rows_current": int(flagged.size),
    }


def _unmatched_row(found: np.ndarray, requested: int, batch_rows: int) -> Row:
    missing = int((~found).sum())
    method = (
        f"{missing} of {len(found)} requests have no batch row; {batch_rows - requested} of "
        f"{batch_rows} batch rows never requested (batch-only traffic)"
    )
    return _informational(UNMATCHED, ~found, method, warn=missing > 0)


def _timing_row(on_rule: np.ndarray, newer: np.ndarray) -> Row:
    other, early = int((~on_rule).sum()), int(newer.sum())
    method = (
        f"{other} served another snapshot than the as-of rule's: {other - early} older (late "
        f"switch), {early} newer (before the publication lag)"
    )
    return _informational(SNAPSHOT_TIMING, ~on_rule, method, warn=early > 0)


def _version_row(same_version: np.ndarray, matched: pd.DataFrame) -> Row:
    others = sorted(set(matched.loc[~same_version, "model_version"].astype(str)))
    method = f"{int((~same_version).sum())} scored by versions {others}; scores not compared"
    return _informational(OTHER_VERSION, ~same_version, method, warn=False)


def day_scores(settings: Settings, day: date) -> pd.DataFrame:
    """D's batch scores (no row when no score table exists yet)."""
    try:
        table = open_score_table(settings)
    except ScoreTableNotFound:
        return pd.DataFrame(columns=BATCH_COLUMNS)
    return table.to_pandas(columns=BATCH_COLUMNS, filters=[("dt", "=", day)])


def _requested_features(settings: Settings, day: date, ids: np.ndarray) -> pd.DataFrame:
    """D's feature rows of the requested transactions only (a day holds far more)."""
    with warehouse.connect(settings, read_only=True) as con:
        con.register("requested", pd.DataFrame({"transaction_id": ids.astype(str)}))
        return con.execute(
            f"SELECT f.* EXCLUDE (dt) FROM {FEATURES_TABLE} f "
            "JOIN requested USING (transaction_id) WHERE f.dt = ?",
            [day],
        ).df()
