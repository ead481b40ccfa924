"""Split the training set into train / validation / test, reproducibly, and keep the split.

A split is identified by a hash of the input content, the strategy and its parameters, so the
same training set split the same way always gets the same `split_id` (and the same rows, in
whatever order the warehouse returned them). Splits are persisted once to the object store under
`splits/split_id=<id>/` so every candidate, the evaluation and any later audit read the very
same rows. Problems that do not make a split unusable (drifting label rates, a tiny part, a
customer on both sides where that was meant to be prevented) come back as warnings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
STRATEGIES = ("time", "group", "stratified", "random")
PREFIX = "splits"

Ratios = tuple[float, float, float]
# A user-supplied strategy: gets the rows in canonical order, returns one part name per row.
SplitFunction = Callable[[pd.DataFrame], Sequence[str]]


@dataclass
class Split:
    split_id: str
    strategy: str
    params: dict[str, Any]
    content_hash: str
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.params["label"]

    @property
    def prefix(self) -> str:
        return f"{PREFIX}/split_id={self.split_id}/"

    def part(self, name: str) -> pd.DataFrame:
        if name not in PARTS:
            raise KeyError(f"unknown split part {name!r}; parts are {PARTS}")
        return getattr(self, name)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Rows, positives and label rate per part (what split.json and the logs report)."""
        out: dict[str, dict[str, Any]] = {}
        for name in PARTS:
            frame = self.part(name)
            positives = int(frame[self.label].sum()) if len(frame) else 0
            out[name] = {
                "rows": len(frame),
                "positives": positives,
                "label_rate": positives / len(frame) if len(frame) else None,
            }
        return out


def content_hash(df: pd.DataFrame) -> str:
    """Order-insensitive hash of a frame's columns, dtypes and rows."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in df.dtypes.items()]).encode())
    digest.update(np.sort(_row_hashes(df)).tobytes())
    return digest.hexdigest()


def _row_hashes(df: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in an order that depends only on their content, so splits ignore input order."""
    order = np.argsort(_row_hashes(df), kind="stable")
    return df.iloc[order].reset_index(drop=True)


def _check_ratios(ratios: Sequence[float]) -> Ratios:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0):
        raise ValueError(
            f"ratios must be three non-negative shares (train, validation, test) summing to 1, "
            f"got {tuple(ratios)}"
        )
    return (float(ratios[0]), float(ratios[1]), float(ratios[2]))


def _cut_points(n: int, ratios: Ratios) -> tuple[int, int]:
    return round(n * ratios[0]), round(n * (ratios[0] + ratios[1]))


def _assign_by_position(n: int, ratios: Ratios) -> np.ndarray:
    first, second = _cut_points(n, ratios)
    parts = np.empty(n, dtype=object)
    parts[:first], parts[first:second], parts[second:] = PARTS
    return parts


def _split_time(
    df: pd.DataFrame, ratios: Ratios, time_column: str
) -> tuple[pd.DataFrame, np.ndarray]:
    times = pd.to_datetime(df[time_column])
    if times.isna().any():
        raise ValueError(
            f"time split needs {time_column!r} on every row; {int(times.isna().sum())} rows have "
            f"none (first at position {int(np.flatnonzero(times.isna())[0])})"
        )
    ordered = df.assign(_t=times).sort_values("_t", kind="stable").reset_index(drop=True)
    sorted_times = ordered.pop("_t").to_numpy()
    first, second = (_snap(sorted_times, cut) for cut in _cut_points(len(ordered), ratios))
    parts = np.empty(len(ordered), dtype=object)
    parts[:first], parts[first:second], parts[second:] = PARTS
    return ordered, parts


def _snap(sorted_times: np.ndarray, cut: int) -> int:
    """Move a cut back to the first row of its timestamp: no instant lies on both sides."""
    if cut >= len(sorted_times):
        return cut
    return int(np.searchsorted(sorted_times, sorted_times[cut], side="left"))


def _split_group(df: pd.DataFrame, ratios: Ratios, seed: int, group_column: str) -> np.ndarray:
    groups = df[group_column]
    if groups.isna().any():
        raise ValueError(
            f"group split needs {group_column!r} on every row; {int(groups.isna().sum())} rows "
            "have none"
        )
    sizes = groups.astype(str).value_counts().sort_index()
    shuffled = sizes.iloc[np.random.default_rng(seed).permutation(len(sizes))]
    # Each group lands in the part where the running row count sits when the group starts.
    starts = shuffled.cumsum() - shuffled
    first, second = _cut_points(len(df), ratios)
    part_of = pd.Series(
        np.where(starts < first, PARTS[0], np.where(starts < second, PARTS[1], PARTS[2])),
        index=shuffled.index,
    )
    return part_of.loc[groups.astype(str)].to_numpy(dtype=object)


def _split_stratified(df: pd.DataFrame, ratios: Ratios, seed: int, label: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = np.empty(len(df), dtype=object)
    for value in sorted(df[label].unique()):
        rows = np.flatnonzero(df[label].to_numpy() == value)
        rows = rows[rng.permutation(len(rows))]
        parts[rows] = _assign_by_position(len(rows), ratios)
    return parts


def _split_random(df: pd.DataFrame, ratios: Ratios, seed: int) -> np.ndarray:
    parts = np.empty(len(df), dtype=object)
    parts[np.random.default_rng(seed).permutation(len(df))] = _assign_by_position(len(df), ratios)
    return parts


def _split_callable(df: pd.DataFrame, function: SplitFunction) -> np.ndarray:
    parts = np.asarray(list(function(df)), dtype=object)
    if len(parts) != len(df):
        raise ValueError(
            f"split function {_function_name(function)} returned {len(parts)} labels for "
            f"{len(df)} rows; it must return one of {PARTS} per row"
        )
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(
            f"split function {_function_name(function)} returned unknown parts {unknown[:5]}; "
            f"use {PARTS}"
        )
    return parts


def _function_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def _split_id(content: str, strategy: str, params: dict[str, Any]) -> str:
    payload = json.dumps(
        {"content": content, "strategy": strategy, "params": params}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _warnings(
    parts: dict[str, pd.DataFrame],
    *,
    label: str,
    group_column: str,
    prevent_group_overlap: bool,
    min_part_rows: int,
    min_part_positives: int,
    label_rate_tolerance: float,
) -> list[str]:
    found: list[str] = []
    total = sum(len(p) for p in parts.values())
    overall = sum(int(p[label].sum()) for p in parts.values()) / total if total else 0.0
    for name, frame in parts.items():
        positives = int(frame[label].sum())
        if len(frame) < min_part_rows or positives < min_part_positives:
            found.append(
                f"part {name} is too small: {len(frame)} rows, {positives} positives "
                f"(want at least {min_part_rows} rows and {min_part_positives} positives); "
                "metrics on it are unreliable: use more days of history or other ratios"
            )
        if not len(frame) or overall in (0.0, 1.0):
            continue
        rate = positives / len(frame)
        z = (rate - overall) / math.sqrt(overall * (1 - overall) / len(frame))
        if abs(rate - overall) > label_rate_tolerance * overall and abs(z) > 3:
            found.append(
                f"label rate of part {name} is {rate:.4f} against {overall:.4f} overall "
                f"(relative difference {abs(rate - overall) / overall:.0%}, z={z:.1f}); "
                "the parts see different fraud levels (drift or a skewed split)"
            )
    if prevent_group_overlap:
        seen: dict[str, set[str]] = {}
        for name, frame in parts.items():
            for group in frame[group_column].astype(str).unique():
                seen.setdefault(group, set()).add(name)
        shared = sorted(g for g, names in seen.items() if len(names) > 1)
        if shared:
            found.append(
                f"{len(shared)} {group_column} values are in more than one part although overlap "
                f"was to be prevented (e.g. {shared[:3]}); the split leaks entities across parts"
            )
    return found


def split_dataset(
    df: pd.DataFrame,
    *,
    strategy: str | SplitFunction = "time",
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
    label: str = "is_fraud",
    time_column: str = "event_ts",
    group_column: str = "customer_id",
    prevent_group_overlap: bool | None = None,
    min_part_rows: int = 200,
    min_part_positives: int = 10,
    label_rate_tolerance: float = 0.5,
) -> Split:
    """Split rows into train/validation/test by `strategy` (time, group, stratified, random or a
    callable returning a part name per row).

    `prevent_group_overlap` (default: only for the group strategy) warns when a `group_column`
    value lands in more than one part. The warning thresholds do not change the rows, so they
    are not part of the split id.
    """
    ratios = _check_ratios(ratios)
    needed = [label] + ([time_column] if strategy == "time" else [])
    needed += [group_column] if strategy == "group" or prevent_group_overlap else []
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"cannot split: columns {missing} are missing; got {list(df.columns)}")
    if df[label].isna().any():
        raise ValueError(
            f"{int(df[label].isna().sum())} rows have no {label!r}; labels must be 0/1"
        )
    if df.empty:
        raise ValueError("cannot split an empty training set")

    digest = content_hash(df)
    rows = _canonical(df)
    params: dict[str, Any] = {"ratios": list(ratios), "label": label}
    if callable(strategy):
        name = "callable"
        params["function"] = _function_name(strategy)
        parts = _split_callable(rows, strategy)
    elif strategy == "time":
        name = strategy
        params["time_column"] = time_column
        rows, parts = _split_time(rows, ratios, time_column)
    elif strategy == "group":
        name = strategy
        params |= {"seed": seed, "group_column": group_column}
        parts = _split_group(rows, ratios, seed, group_column)
    elif strategy == "stratified":
        name = strategy
        params["seed"] = seed
        parts = _split_stratified(rows, ratios, seed, label)
    elif strategy == "random":
        name = strategy
        params["seed"] = seed
        parts = _split_random(rows, ratios, seed)
    else:
        raise ValueError(
            f"unknown split strategy {strategy!r}; use one of {STRATEGIES} or a callable"
        )

    frames = {p: rows[parts == p].reset_index(drop=True) for p in PARTS}
    prevent = strategy == "group" if prevent_group_overlap is None else prevent_group_overlap
    warnings = _warnings(
        frames,
        label=label,
        group_column=group_column,
        prevent_group_overlap=prevent,
        min_part_rows=min_part_rows,
        min_part_positives=min_part_positives,
        label_rate_tolerance=label_rate_tolerance,
    )
    split = Split(
        split_id=_split_id(digest, name, params),
        strategy=name,
        params=params,
        content_hash=digest,
        warnings=warnings,
        **frames,
    )
    log.info("split %s (%s): %s", split.split_id, name, split.summary())
    for warning in warnings:
        log.warning("split %s: %s", split.split_id, warning)
    return split
