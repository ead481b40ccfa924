"""The columns monitoring compares for a model version, computed from raw feature rows.

Every input the version reads: its transaction fields and online features as a row carries
them (`FeatureColumns.inputs`, which includes the raw columns its request-time features come
from, such as `country`) and the request-time features themselves, computed by the code shipped
inside the model. Timestamps (`event_ts`, `last_txn_ts`) are left out: every day's differ from
the training period's by construction; the features derived from them are compared.
"""

from __future__ import annotations

import pandas as pd

from mlpipeline.monitoring.drift_tests import CATEGORICAL, NUMERICAL
from mlpipeline.training.model_features import FeatureColumns
from mlpipeline.training.request_features import request_features


def column_kinds(columns: FeatureColumns, rows: pd.DataFrame) -> dict[str, str]:
    """Monitored column -> numerical / categorical, in the model's input order."""
    kinds: dict[str, str] = {}
    for name in columns.inputs:
        if name in columns.categorical:
            kinds[name] = CATEGORICAL
        elif pd.api.types.is_datetime64_any_dtype(rows[name]):
            continue
        elif name in columns.numeric or pd.api.types.is_numeric_dtype(rows[name]):
            kinds[name] = NUMERICAL
        else:
            kinds[name] = CATEGORICAL
    kinds.update(dict.fromkeys(columns.request, NUMERICAL))
    return kinds


def monitored_frame(rows: pd.DataFrame, columns: FeatureColumns) -> pd.DataFrame:
    """The raw inputs and the request-time features of `rows` (a feature or training row each)."""
    raw = rows.loc[:, list(columns.inputs)]
    return pd.concat([raw, request_features(raw, columns.request)], axis=1)
