"""The request-time features the saved model computes itself: the code a loaded model runs.

The scikit-learn Pipeline's first step is `FunctionTransformer(model_frame)`, so a serialised
model refers to `mlpipeline.training.request_features.model_frame` by name and whoever loads it
must be able to import this module. That is why it stands alone: the standard library and
pandas (NumPy and scikit-learn would do too), nothing from `mlpipeline`
(tests/test_model_standalone.py checks).

Training ships this one file inside the MLflow model (`code_paths`) as
`code/mlpipeline/training/request_features.py`, with no `__init__.py` on the way. MLflow puts
`code/` on `sys.path` when it loads the model, and Python resolves `mlpipeline` and
`mlpipeline.training` there as namespace packages (PEP 420), so the dotted name in the dump works
in an environment made from the model's requirements alone. Where the real `mlpipeline` is
installed, its regular package always wins over namespace portions, whatever the order of
`sys.path`, so the shipped copy can never shadow the project's code.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

# Request-time feature -> the raw columns it is computed from.
REQUEST_FEATURES: dict[str, tuple[str, ...]] = {
    "amount_to_mean_30d": ("amount", "amount_mean_30d"),
    "seconds_since_last_txn": ("event_ts", "last_txn_ts"),
    "hour_of_day": ("event_ts",),
    "is_night": ("event_ts",),
    "is_foreign_country": ("country", "usual_country"),
    "is_online": ("channel",),
}

# Night in UTC: the only clock the contract gives us (event_ts is UTC, no customer time zone).
NIGHT_HOURS = range(0, 6)
MISSING_CATEGORY = "__missing__"


def input_columns(
    numeric: Sequence[str], categorical: Sequence[str], request: Sequence[str]
) -> tuple[str, ...]:
    """The raw row columns a model with these features reads (its input contract), in order."""
    needed = [*numeric, *categorical]
    for feature in request:
        needed.extend(REQUEST_FEATURES[feature])
    return tuple(dict.fromkeys(needed))


def _timestamps(values: pd.Series) -> pd.Series:
    # Naive values are UTC by contract; strings may carry a zone (e.g. "...Z") in online requests.
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def request_features(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Compute the named request-time features from raw row columns (NaN where undefined)."""
    out = pd.DataFrame(index=frame.index)
    for name in names:
        if name == "amount_to_mean_30d":
            mean = _numbers(frame["amount_mean_30d"])
            out[name] = _numbers(frame["amount"]) / mean.where(mean > 0)
        elif name == "seconds_since_last_txn":
            delta = _timestamps(frame["event_ts"]) - _timestamps(frame["last_txn_ts"])
            out[name] = delta.dt.total_seconds().astype("float64")
        elif name == "hour_of_day":
            out[name] = _timestamps(frame["event_ts"]).dt.hour.astype("float64")
        elif name == "is_night":
            hour = _timestamps(frame["event_ts"]).dt.hour
            out[name] = hour.isin(NIGHT_HOURS).astype("float64").where(hour.notna())
        elif name == "is_foreign_country":
            country, usual = frame["country"], frame["usual_country"]
            known = country.notna() & usual.notna()
            out[name] = (country.astype(object) != usual.astype(object)).astype("float64")
            out[name] = out[name].where(known)
        elif name == "is_online":
            channel = frame["channel"]
            out[name] = (channel.astype(object) == "online").astype("float64")
            out[name] = out[name].where(channel.notna())
        else:
            raise ValueError(
                f"unknown request-time feature {name!r}; known: {list(REQUEST_FEATURES)}"
            )
    return out


def model_frame(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    request: Sequence[str],
) -> pd.DataFrame:
    """First pipeline step: raw rows -> typed model columns (floats, plain string categories)."""
    needed = input_columns(numeric, categorical, request)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise KeyError(
            f"model input is missing columns {missing}; the model reads {list(needed)}. "
            "Pass the transaction_features row (transaction fields + online features)."
        )
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = _numbers(frame[column])
    for column in categorical:
        values = frame[column].astype(object)
        out[column] = values.where(values.notna(), MISSING_CATEGORY).astype(str).astype(object)
    return pd.concat([out, request_features(frame, request)], axis=1)
