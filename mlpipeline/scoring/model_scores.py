"""The champion applied to feature rows: what scoring needs of a model, and the score rows.

Every chunk is checked (a binary classifier, finite scores) before a row of it is written, so a
broken model fails the day with the row to look at instead of publishing nonsense.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from mlpipeline.scoring.score_table import SCORE_SCHEMA

FEATURES_TABLE = "features.transaction_features"


class ChampionLike(Protocol):
    """What scoring needs of `model_registry.ChampionRef`: one exact version and its threshold."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def decision_threshold(self) -> float: ...


class ProbabilisticModel(Protocol):
    def predict_proba(self, X: pd.DataFrame) -> Any: ...  # noqa: N803 - scikit-learn's name


class ModelLoader(Protocol):
    def __call__(self, ref: Any) -> ProbabilisticModel: ...


def model_input(chunk: pa.Table) -> pd.DataFrame:
    """A chunk as the DataFrame the model pipeline takes (dates as datetime64, like `.df()`)."""
    return chunk.to_pandas(date_as_object=False)


def positive_scores(
    model: ProbabilisticModel, frame: pd.DataFrame, champion: ChampionLike, first_row: int
) -> np.ndarray:
    proba = np.asarray(model.predict_proba(frame), dtype=float)
    if proba.ndim != 2 or proba.shape[0] != len(frame) or proba.shape[1] != 2:
        raise ValueError(
            f"{champion.name} version {champion.version} returned predict_proba of shape "
            f"{proba.shape} for {len(frame)} rows; a binary classifier returns ({len(frame)}, 2). "
            "Roll the champion back to a binary fraud classifier."
        )
    scores = proba[:, 1]
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"{champion.name} version {champion.version} returned {bad.size} non-finite scores "
            f"(first at row {first_row + int(bad[0])} of the day, "
            f"transaction {frame['transaction_id'].iloc[bad[0]]}); check that row's features."
        )
    return scores


def score_rows(
    chunk: pa.Table,
    scores: np.ndarray,
    threshold: float,
    champion: ChampionLike,
    run_id: str,
    scored_at: pa.Scalar,
) -> pa.Table:
    """Score rows in the contract's schema; keys and lineage come straight from the features."""
    n = chunk.num_rows
    computed = {
        "score": pa.array(scores, pa.float64()),
        "decision": pa.array(scores >= threshold, pa.bool_()),
        "model_name": pa.repeat(pa.scalar(champion.name, pa.string()), n),
        "model_version": pa.repeat(pa.scalar(str(champion.version), pa.string()), n),
        "scoring_run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
        "scored_at": pa.repeat(scored_at, n),
    }
    missing = {
        f.name: chunk.column(f.name).null_count
        for f in SCORE_SCHEMA
        if not f.nullable and f.name not in computed and chunk.column(f.name).null_count
    }
    if missing:
        raise ValueError(
            f"{FEATURES_TABLE} rows without {missing} (column: rows in this chunk); the score "
            "table requires these keys and lineage columns. Fix the upstream rows, rebuild the "
            "dbt models, then re-run scoring."
        )
    return pa.Table.from_arrays(
        [
            (computed[f.name] if f.name in computed else chunk.column(f.name)).cast(f.type)
            for f in SCORE_SCHEMA
        ],
        schema=SCORE_SCHEMA,
    )
