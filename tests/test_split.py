"""Splitting the training set: every strategy, the warnings, and persistence in the object store."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from mlpipeline import warehouse
from mlpipeline.training.split import PARTS, Split, split_dataset
from mlpipeline.training.split_store import load_split, persist_split, read_training_set


def training_rows(n: int = 3000, *, customers: int = 150, seed: int = 1) -> pd.DataFrame:
    """Rows shaped like marts.training_set (the columns splitting looks at, plus a feature)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01")
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i:06d}" for i in range(n)],
            "customer_id": [f"c{c:04d}" for c in rng.integers(0, customers, n)],
            "amount": np.round(rng.lognormal(3.5, 0.8, n), 2),
            "event_ts": start + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"),
            "is_fraud": (rng.random(n) < 0.06).astype(int),
            "training_cutoff": date(2026, 3, 1),
        }
    )


def ids(frame: pd.DataFrame) -> set[str]:
    return set(frame["transaction_id"])


def assert_partition(split: Split, df: pd.DataFrame) -> None:
    parts = [ids(split.part(p)) for p in PARTS]
    assert sum(len(p) for p in parts) == len(df)
    assert set().union(*parts) == ids(df)


@pytest.mark.unit
def test_time_split_is_ordered_and_ignores_input_order() -> None:
    df = training_rows()
    split = split_dataset(df)

    assert split.strategy == "time"
    assert_partition(split, df)
    assert split.train["event_ts"].max() < split.validation["event_ts"].min()
    assert split.validation["event_ts"].max() < split.test["event_ts"].min()
    assert [len(split.part(p)) for p in PARTS] == pytest.approx([2100, 450, 450], abs=5)

    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = split_dataset(shuffled)
    assert again.split_id == split.split_id
    for part in PARTS:
        pd.testing.assert_frame_equal(again.part(part), split.part(part))

    assert split_dataset(df, ratios=(0.8, 0.1, 0.1)).split_id != split.split_id
    changed = df.assign(amount=df["amount"] + np.where(df.index == 0, 1.0, 0.0))
    assert split_dataset(changed).split_id != split.split_id


@pytest.mark.unit
def test_time_split_never_puts_one_instant_on_both_sides() -> None:
    df = training_rows(1000)
    df["event_ts"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(df.index % 7, unit="D")
    split = split_dataset(df, min_part_rows=0, min_part_positives=0)

    assert_partition(split, df)
    seen = [set(split.part(p)["event_ts"]) for p in PARTS]
    assert not seen[0] & seen[1] and not seen[1] & seen[2] and not seen[0] & seen[2]


@pytest.mark.unit
def test_group_split_keeps_each_customer_on_one_side() -> None:
    df = training_rows()
    split = split_dataset(df, strategy="group")

    assert_partition(split, df)
    customers = [set(split.part(p)["customer_id"]) for p in PARTS]
    assert not customers[0] & customers[1]
    assert not customers[1] & customers[2]
    assert not customers[0] & customers[2]
    assert not [w for w in split.warnings if "more than one part" in w]
    assert len(split.train) / len(df) == pytest.approx(0.7, abs=0.05)
    assert split.params == {
        "ratios": [0.7, 0.15, 0.15],
        "label": "is_fraud",
        "seed": 42,
        "group_column": "customer_id",
    }

    other = split_dataset(df, strategy="group", seed=7)
    assert other.split_id != split.split_id
    assert set(other.train["customer_id"]) != customers[0]


@pytest.mark.unit
def test_stratified_split_keeps_the_label_rate_in_every_part() -> None:
    df = training_rows()
    split = split_dataset(df, strategy="stratified")

    assert_partition(split, df)
    overall = df["is_fraud"].sum()
    for part in PARTS:
        frame = split.part(part)
        share = len(frame) / len(df)
        assert frame["is_fraud"].sum() == pytest.approx(overall * share, abs=1)
    assert not split.warnings


@pytest.mark.unit
def test_random_split_is_reproducible_by_seed() -> None:
    df = training_rows()
    split = split_dataset(df, strategy="random", seed=11)

    assert_partition(split, df)
    assert [len(split.part(p)) for p in PARTS] == [2100, 450, 450]
    again = split_dataset(df.iloc[::-1], strategy="random", seed=11)
    assert again.split_id == split.split_id
    assert ids(again.test) == ids(split.test)
    different = split_dataset(df, strategy="random", seed=12)
    assert different.split_id != split.split_id
    assert ids(different.test) != ids(split.test)
    # A random split spreads customers over the parts; nothing was to be prevented here.
    assert not [w for w in split.warnings if "more than one part" in w]


def by_customer_parity(frame: pd.DataFrame) -> list[str]:
    number = frame["customer_id"].str[1:].astype(int)
    return ["train" if n % 4 < 2 else "validation" if n % 4 == 2 else "test" for n in number]


@pytest.mark.unit
def test_callable_strategy_uses_the_function_and_names_it() -> None:
    df = training_rows()
    split = split_dataset(df, strategy=by_customer_parity, prevent_group_overlap=True)

    assert split.strategy == "callable"
    assert split.params["function"] == f"{__name__}.by_customer_parity"
    assert_partition(split, df)
    assert (split.test["customer_id"].str[1:].astype(int) % 4 == 3).all()
    assert split_dataset(df, strategy=by_customer_parity).split_id == split.split_id

    with pytest.raises(ValueError, match="unknown parts"):
        split_dataset(df, strategy=lambda frame: ["holdout"] * len(frame))
    with pytest.raises(ValueError, match="returned 1 labels"):
        split_dataset(df, strategy=lambda frame: ["train"])


@pytest.mark.unit
def test_warns_when_label_rates_drift_between_parts() -> None:
    df = training_rows()
    late = df["event_ts"] > df["event_ts"].quantile(0.85)
    df["is_fraud"] = np.where(
        late, (df.index % 5 == 0).astype(int), (df.index % 60 == 0).astype(int)
    )
    split = split_dataset(df)

    drift = [w for w in split.warnings if "label rate of part" in w]
    assert any("part test" in w for w in drift)


@pytest.mark.unit
def test_warns_when_a_part_is_too_small() -> None:
    df = training_rows(1000)
    split = split_dataset(df, strategy="random", ratios=(0.96, 0.02, 0.02))

    small = [w for w in split.warnings if "too small" in w]
    assert {w.split()[1] for w in small} == {"validation", "test"}


@pytest.mark.unit
def test_warns_about_entity_overlap_where_it_was_to_be_prevented() -> None:
    df = training_rows()
    split = split_dataset(df, strategy="random", prevent_group_overlap=True)

    overlap = [w for w in split.warnings if "more than one part" in w]
    assert len(overlap) == 1
    assert "customer_id" in overlap[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ratios": (0.7, 0.2, 0.2)}, ValueError, "summing to 1"),
        ({"strategy": "by_moon_phase"}, ValueError, "unknown split strategy"),
        ({"label": "is_chargeback"}, KeyError, "is_chargeback"),
        ({"strategy": "group", "group_column": "account_id"}, KeyError, "account_id"),
    ],
)
@pytest.mark.unit
def test_rejects_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        split_dataset(training_rows(300), **kwargs)


@pytest.mark.unit
def test_rejects_missing_labels() -> None:
    df = training_rows(300).astype({"is_fraud": "float64"})
    df.loc[5, "is_fraud"] = np.nan
    with pytest.raises(ValueError, match="1 rows have no 'is_fraud'"):
        split_dataset(df)


@pytest.mark.parametrize(
    "store_fixture",
    [
        pytest.param("local_store", marks=pytest.mark.unit),
        pytest.param("s3_store", marks=pytest.mark.integration),
    ],
)
def test_persist_and_load_round_trip(store_fixture: str, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(store_fixture)
    split = split_dataset(training_rows(), strategy="group")
    split.warnings.append("a warning to keep")

    prefix = persist_split(store, split)

    assert prefix == f"splits/split_id={split.split_id}/"
    assert store.list(prefix) == [
        f"{prefix}{name}"
        for name in ("split.json", "test.parquet", "train.parquet", "validation.parquet")
    ]
    manifest = json.loads(store.get_bytes(prefix + "split.json"))
    assert manifest["parts"]["train"]["rows"] == len(split.train)
    loaded = load_split(store, split.split_id)
    assert (loaded.split_id, loaded.strategy, loaded.params) == (
        split.split_id,
        split.strategy,
        split.params,
    )
    assert loaded.warnings == split.warnings
    for part in PARTS:
        pd.testing.assert_frame_equal(loaded.part(part), split.part(part))

    # A complete split is never rewritten: the manifest (and its timestamp) stays as it was.
    assert persist_split(store, split) == prefix
    assert (
        json.loads(store.get_bytes(prefix + "split.json"))["created_at"] == manifest["created_at"]
    )


@pytest.mark.unit
def test_load_split_detects_altered_or_missing_objects(local_store) -> None:
    split = split_dataset(training_rows())
    prefix = persist_split(local_store, split)
    local_store.put_bytes(prefix + "test.parquet", local_store.get_bytes(prefix + "train.parquet"))

    with pytest.raises(ValueError, match="does not match the checksum"):
        load_split(local_store, split.split_id)
    with pytest.raises(FileNotFoundError, match="no complete split nope"):
        load_split(local_store, "nope")


@pytest.mark.unit
def test_read_training_set_reads_one_cutoff(settings) -> None:
    rows = training_rows(50)
    with warehouse.connect(settings) as con:
        with pytest.raises(RuntimeError, match="run the dbt build"):
            read_training_set(con, date(2026, 3, 1))
        warehouse.ensure_schemas(con)
        con.register("rows", rows)
        con.execute("CREATE TABLE marts.training_set AS SELECT * FROM rows")

        frame = read_training_set(con, date(2026, 3, 1))
        assert list(frame["transaction_id"]) == sorted(rows["transaction_id"])
        assert frame["is_fraud"].sum() == rows["is_fraud"].sum()
        with pytest.raises(RuntimeError, match=r"built for training cutoff\(s\)"):
            read_training_set(con, date(2026, 3, 2))
