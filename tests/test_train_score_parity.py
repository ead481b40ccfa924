"""Training and batch scoring see the same features, and the model gives the same scores.

One real history: 30 days of the demo producer's data (`mlpipeline.devtools.generate`) ingested with
the ingestion library and built by one real `dbt build`. The training path is the nightly's:
`marts.training_set` for the cutoff, split and persisted to the object store (`nightly.split`),
then every configured candidate fitted on it and registered in MLflow (`nightly.train`). The
scoring path is `score.score_day` on `features.transaction_features`, with the registered model
loaded from MLflow. For three matured days (no snapshot yet, the first snapshot switching in at
02:00, a week of history), every transaction is compared between the two paths: the raw inputs
the model reads, the matrix its estimator gets, and the score.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.days import day_range
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.devtools.generate import generate_range
from mlpipeline.features import dbt_project, transform
from mlpipeline.ingest import batches, revisions
from mlpipeline.pipeline import nightly
from mlpipeline.scoring import score, score_table
from mlpipeline.training import model_registry
from mlpipeline.training.model_features import select_feature_columns
from mlpipeline.training.split_store import load_split
from mlpipeline.warehouse.meta import ensure_meta
from tests.e2e_env import OVERRIDES

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
CUTOFF = START + timedelta(days=29)
# Matured for CUTOFF (label_maturity_days = 21): the first nine days.
SAMPLE_DAYS = (START, START + timedelta(days=1), START + timedelta(days=8))
CUSTOMERS = 300


@dataclass(frozen=True)
class History:
    settings: Settings
    training_rows: pd.DataFrame
    versions: dict[str, str]


def _ingest(settings: Settings) -> None:
    """Every landed dataset-day through prepare → load → promote, as the nightly's ingest does.

    The raw GX gate between load and promote is left out: it never changes rows (it only
    quarantines), has its own tests, and would triple this fixture's time.
    """
    store = LocalStore(settings.local_store_root)
    warehouse.create(settings)
    with warehouse.connect(settings) as con:
        ensure_meta(con)
        for day in day_range(START, CUTOFF):
            for dataset in nightly.DATASETS:
                prepared = revisions.prepare_revision(store, dataset, day)
                assert revisions.load_revision(con, store, prepared, "parity") == "ingested"
                batches.set_status(
                    con, prepared.batch_id, prepared.revision, "validated", run_id="parity"
                )
                batches.promote(con, prepared.batch_id, prepared.revision, run_id="parity")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    data_dir = tmp_path_factory.mktemp("parity") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
        for var in OVERRIDES:
            env.delenv(var, raising=False)
        settings = Settings.from_env()
        generate_range(LocalStore(settings.local_store_root), START, CUTOFF, customers=CUSTOMERS)
        _ingest(settings)
        transform.build(CUTOFF, settings=settings, full_refresh=True)

        split_info = nightly.split(CUTOFF.isoformat(), {})
        versions = {
            job["candidate"]: nightly.train(job)["model_version"]
            for job in nightly.candidates(split_info)
        }
        split = load_split(LocalStore(settings.local_store_root), split_info["split_id"])
        training_rows = pd.concat([split.train, split.validation, split.test], ignore_index=True)
        yield History(settings, training_rows, versions)


class _Recorder:
    """The registered model as scoring loads it, keeping every frame scoring feeds it."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.frames: list[pd.DataFrame] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.frames.append(frame.copy())
        return self.model.predict_proba(frame)


def _champion(settings: Settings, version: str) -> model_registry.ChampionRef:
    """Promote `version` the way evaluation does (alias + threshold tag) and resolve it."""
    client = model_registry.client(settings.mlflow_tracking_uri)
    client.set_model_version_tag(model_registry.MODEL_NAME, version, "decision_threshold", "0.5")
    client.set_registered_model_alias(model_registry.MODEL_NAME, "champion", version)
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    assert champion is not None and champion.version == version
    return champion


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("transaction_id").sort_index()


def _same_values(left: pd.Series, right: pd.Series) -> pd.Series:
    """Equal, or missing on both sides (NaN, None, NaT and pd.NA alike)."""
    both_missing = left.isna() & right.isna()
    if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
        close = np.isclose(left.astype(float), right.astype(float), rtol=0, atol=1e-9)
        return pd.Series(close, index=left.index) | both_missing
    if pd.api.types.is_datetime64_any_dtype(left) or pd.api.types.is_datetime64_any_dtype(right):
        return (pd.to_datetime(left) == pd.to_datetime(right)).fillna(False) | both_missing
    return (left.astype(object) == right.astype(object)).fillna(False) | both_missing


@pytest.mark.parametrize("candidate", ["hist_gradient_boosting", "logistic_regression"])
def test_training_and_scoring_rows_and_scores_match(history: History, candidate: str) -> None:
    settings = history.settings
    champion = _champion(settings, history.versions[candidate])
    model = model_registry.load_model(champion)
    recorder = _Recorder(model)
    for day in SAMPLE_DAYS:
        result = score.score_day(
            day,
            settings=settings,
            champion=champion,
            load_model=lambda ref: recorder,
            run_id=f"parity-{candidate}",
            chunk_rows=128,
        )
        assert result.rows_scored == result.rows_to_score > 0

    days = pd.to_datetime(pd.Series(SAMPLE_DAYS))
    training = _by_id(history.training_rows[history.training_rows["dt"].isin(days)])
    scoring = _by_id(pd.concat(recorder.frames, ignore_index=True))
    # Every transaction of a matured day is in both paths, once.
    assert training.index.is_unique and scoring.index.is_unique
    assert list(training.index) == list(scoring.index)
    # The cases that matter are all present: no snapshot yet (defaults), and a snapshot.
    assert training["snapshot_cutoff"].isna().any() and training["snapshot_cutoff"].notna().any()

    # The raw inputs the model reads (transaction fields, online features, their sources).
    columns = select_feature_columns(dbt_project.online_spec().features)
    differing = {
        name: list(training.index[~_same_values(training[name], scoring[name])][:3])
        for name in columns.inputs
    }
    assert {name: ids for name, ids in differing.items() if ids} == {}

    # What the estimator itself gets after the request-time features and encoding.
    prepared = model[:-1]
    np.testing.assert_array_equal(
        prepared.transform(training.reset_index()), prepared.transform(scoring.reset_index())
    )

    # The published score of each transaction is the model's score on its training row.
    published = _by_id(score_table.read_scores(settings)).loc[training.index]
    expected = model.predict_proba(training.reset_index())[:, 1]
    np.testing.assert_allclose(published["score"], expected, rtol=0, atol=1e-12)
    assert set(published["model_version"]) == {champion.version}
    assert published["score"].std() > 0  # a model that scores, not a constant
