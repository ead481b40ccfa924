"""Drift of one column against its reference, with the test Evidently's DataDriftPreset picks.

Why not Evidently itself: evidently 0.7.23, its newest release, resolves with the pinned stack
but cannot be imported under pandas 3. `import evidently` loads
`evidently.legacy.tests.data_integrity_tests` (via descriptors -> core.datasets ->
legacy.suite.base_suite -> legacy.tests), which imports
`pandas.core.dtypes.common.infer_dtype_from_object`, a private function pandas 3 removed:
ImportError. With that function shimmed into pandas, its DataDriftPreset does run on pandas 3
frames, but patching pandas' internals in production to load a library is not worth it. So the
same tests run here on SciPy, with Evidently's default choice of test and thresholds
(`evidently/legacy/calculations/stattests/registry.py::_get_default_stattest`):

- reference of at most 1,000 rows: a numerical column with more than 5 distinct values gets the
  two-sample Kolmogorov-Smirnov test; any other column the chi-square test, or the
  two-proportion Z-test when it has at most 2 values. Each gives a p-value; drift below 0.05.
- larger reference: a numerical column with more than 5 distinct values gets the Wasserstein
  distance normed by the reference's standard deviation, any other the Jensen-Shannon distance
  of the value shares (of histogram bins for a numerical column with more than 20 values).
  Drift at or above 0.1.

Missing values are dropped first, as Evidently does. Thresholds come from pipeline.yaml
(`monitoring.drift_thresholds`). Checked once against Evidently 0.7.23 itself (shimmed, in a
throwaway environment) on numerical, few-valued, binary and categorical columns with small and
large references: all six tests gave the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

SMALL_REFERENCE = 1000
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
NUMERICAL, CATEGORICAL = "numerical", "categorical"


@dataclass(frozen=True)
class DriftResult:
    method: str
    value: float
    threshold: float
    drifted: bool


def choose_method(reference: pd.Series, current: pd.Series, kind: str) -> str:
    distinct = pd.concat([reference, current]).nunique()
    many_values = kind == NUMERICAL and distinct > 5
    if len(reference) <= SMALL_REFERENCE:
        if many_values:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    return "wasserstein" if many_values else "jensenshannon"


def column_drift(
    reference: pd.Series, current: pd.Series, kind: str, thresholds: Mapping[str, float]
) -> DriftResult:
    """The chosen test's statistic and verdict; a column with values on one side only drifted."""
    reference, current = _values(reference, kind), _values(current, kind)
    if reference.empty or current.empty:
        return DriftResult("no values", math.nan, math.nan, reference.empty != current.empty)
    method = choose_method(reference, current, kind)
    value = float(_STATISTICS[method](reference, current, kind))
    threshold = float(thresholds[method])
    drifted = value < threshold if method in P_VALUE_METHODS else value >= threshold
    return DriftResult(method, value, threshold, bool(drifted))


def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance in units of the reference's standard deviation (at least 0.001)."""
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current)) / norm


def _values(series: pd.Series, kind: str) -> pd.Series:
    if kind == NUMERICAL:
        series = pd.to_numeric(series, errors="coerce").astype("float64")
        return series[np.isfinite(series)]
    return series.dropna().astype(str)


def _shares(reference: pd.Series, current: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == NUMERICAL and reference.nunique() > 20:
        edges = np.histogram_bin_edges(pd.concat([reference, current]), bins="sturges")
        return (
            np.histogram(reference, edges)[0] / len(reference),
            np.histogram(current, edges)[0] / len(current),
        )
    keys = sorted(set(reference.unique()) | set(current.unique()))
    return (
        reference.value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy(),
        current.value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy(),
    )


def _ks(reference: pd.Series, current: pd.Series, kind: str) -> float:
    return stats.ks_2samp(reference, current).pvalue


def _chisquare(reference: pd.Series, current: pd.Series, kind: str) -> float:
    keys = sorted(set(reference.unique()) | set(current.unique()))
    expected = reference.value_counts().reindex(keys, fill_value=0) * len(current) / len(reference)
    observed = current.value_counts().reindex(keys, fill_value=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.chisquare(observed.to_numpy(), expected.to_numpy()).pvalue


def _z(reference: pd.Series, current: pd.Series, kind: str) -> float:
    """Two-proportion Z-test on the share of the first value (Evidently's `z`)."""
    keys = sorted(set(reference.unique()) | set(current.unique()))
    if len(keys) == 1:
        return 1.0
    p1, p2 = (reference == keys[0]).mean(), (current == keys[0]).mean()
    n1, n2 = len(reference), len(current)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 2 * (1 - stats.norm.cdf(abs(z)))


def _wasserstein(reference: pd.Series, current: pd.Series, kind: str) -> float:
    return normed_wasserstein(reference.to_numpy(), current.to_numpy())


def _jensenshannon(reference: pd.Series, current: pd.Series, kind: str) -> float:
    return float(distance.jensenshannon(*_shares(reference, current, kind)))


_STATISTICS: dict[str, Callable[[pd.Series, pd.Series, str], float]] = {
    "ks": _ks,
    "chisquare": _chisquare,
    "z": _z,
    "wasserstein": _wasserstein,
    "jensenshannon": _jensenshannon,
}
METHODS = tuple(_STATISTICS)
