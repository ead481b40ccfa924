"""The model's feature columns and the scikit-learn Pipeline that computes them from a raw row.

The saved Pipeline takes a raw row (transaction fields + the online features the transaction
saw) and derives the request-time features itself, so batch scoring, online scoring and training
all run one code path. That code lives in `request_features`, a standalone module shipped inside
each model; this module only chooses columns and assembles the Pipeline at training time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlpipeline.training.request_features import REQUEST_FEATURES, input_columns, model_frame


class FeatureSpecLike(Protocol):
    """One declared online feature (`features.dbt_project.FeatureSpec` has this shape)."""

    name: str
    type: str
    default: Any


# Transaction fields every row carries, whatever the online feature set declares.
TRANSACTION_NUMERIC: tuple[str, ...] = ("amount",)
TRANSACTION_CATEGORICAL: tuple[str, ...] = ("merchant_category", "channel")

_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "INT",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "REAL",
    "DOUBLE",
    "DECIMAL",
    "NUMERIC",
    "BOOLEAN",
    "BOOL",
)
_CATEGORICAL_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR")
_TEMPORAL_TYPES = ("TIMESTAMP", "DATE", "TIME")


@dataclass(frozen=True)
class FeatureColumns:
    """Which columns a model uses: raw numeric, raw categorical and request-time features."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    request: tuple[str, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The raw row columns the pipeline reads (its input contract), in a stable order."""
        return input_columns(self.numeric, self.categorical, self.request)

    @property
    def model_numeric(self) -> tuple[str, ...]:
        return (*self.numeric, *self.request)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical, *self.request)

    def to_dict(self) -> dict[str, list[str]]:
        return {key: list(value) for key, value in asdict(self).items()}


def _kind(spec: FeatureSpecLike) -> str:
    base = str(spec.type).strip().upper().split("(")[0].strip()
    if base in _NUMERIC_TYPES:
        return "numeric"
    if base in _CATEGORICAL_TYPES:
        return "categorical"
    if base.startswith(_TEMPORAL_TYPES):
        return "temporal"
    raise ValueError(
        f"online feature {spec.name!r} has type {spec.type!r}, which the model cannot use; "
        f"declare it as one of {_NUMERIC_TYPES + _CATEGORICAL_TYPES} or a TIMESTAMP/DATE in "
        "customer_snapshot.yml (meta.online)"
    )


def select_feature_columns(
    online_features: Iterable[FeatureSpecLike],
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> FeatureColumns:
    """Model columns from the declared online features, narrowed by a candidate's include/exclude.

    Temporal online features (e.g. last_txn_ts) are not fed raw; they only feed request-time
    features. A request-time feature is available only when its source columns are declared.
    """
    numeric = list(TRANSACTION_NUMERIC)
    categorical = list(TRANSACTION_CATEGORICAL)
    declared = {*TRANSACTION_NUMERIC, *TRANSACTION_CATEGORICAL, "event_ts", "country"}
    for spec in online_features:
        kind = _kind(spec)
        declared.add(spec.name)
        if kind == "numeric":
            numeric.append(spec.name)
        elif kind == "categorical":
            categorical.append(spec.name)
    request = [name for name, sources in REQUEST_FEATURES.items() if set(sources) <= declared]
    available = [*numeric, *categorical, *request]
    unknown = [name for name in [*(include or []), *(exclude or [])] if name not in available]
    if unknown:
        raise ValueError(
            f"candidate include/exclude names {unknown} are not model features; "
            f"available: {available}"
        )
    keep = set(include) if include else set(available)
    keep -= set(exclude or [])
    if not keep:
        raise ValueError("the candidate's include/exclude leave no feature to train on")
    return FeatureColumns(
        numeric=tuple(c for c in numeric if c in keep),
        categorical=tuple(c for c in categorical if c in keep),
        request=tuple(c for c in request if c in keep),
    )


def build_pipeline(
    estimator: BaseEstimator,
    feature_columns: FeatureColumns,
    *,
    scale: bool = False,
    min_category_frequency: int = 20,
) -> Pipeline:
    """Raw row -> request-time features -> impute/scale/one-hot -> estimator (predict_proba)."""
    numeric_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    ]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = [
        ("numeric", Pipeline(numeric_steps), list(feature_columns.model_numeric))
    ]
    if feature_columns.categorical:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=min_category_frequency,
            sparse_output=False,
            dtype=np.float64,
        )
        transformers.append(("categorical", encoder, list(feature_columns.categorical)))
    prepare = FunctionTransformer(
        model_frame,
        kw_args={
            "numeric": list(feature_columns.numeric),
            "categorical": list(feature_columns.categorical),
            "request": list(feature_columns.request),
        },
    )
    return Pipeline(
        [
            ("prepare", prepare),
            ("columns", ColumnTransformer(transformers, remainder="drop")),
            ("model", estimator),
        ]
    )
