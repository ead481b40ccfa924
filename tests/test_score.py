"""Batch scoring against real components: DuckDB files, MLflow models, Delta tables on a folder
store and on S3 over HTTP (moto's server).

The champion comes from a real MLflow registry (`fraud_detector`, alias `champion`, tag
`decision_threshold`), resolved and loaded through `mlpipeline.training.model_registry`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlpipeline import warehouse
from mlpipeline.core import objectstore
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import S3Store
from mlpipeline.pipeline import nightly
from mlpipeline.scoring import score, score_table
from mlpipeline.training import model_registry

DAY1 = date(2026, 1, 5)
DAY2 = date(2026, 1, 6)
ROWS = {DAY1: 2600, DAY2: 1300}
MODEL = "fraud_detector"

# A stand-in for dbt's features.transaction_features: the contract's transaction and lineage
# columns plus a few online feature columns, with fraud planted on amount and channel.
FEATURES_SQL = """
CREATE TABLE IF NOT EXISTS features.transaction_features AS SELECT * FROM (
    SELECT
        'tx-' || strftime(d, '%Y%m%d') || '-' || lpad(i::VARCHAR, 6, '0') AS transaction_id,
        'c' || (i % 97)::VARCHAR AS customer_id,
        'm' || (i % 13)::VARCHAR AS merchant_id,
        ['grocery', 'fuel', 'travel', 'electronics', 'jewelry'][1 + i % 5] AS merchant_category,
        ((i * 37) % 900 + 1)::DECIMAL(18, 2) AS amount,
        'EUR' AS currency,
        ['DE', 'FR', 'NL'][1 + i % 3] AS country,
        ['online', 'pos', 'contactless'][1 + i % 3] AS channel,
        d::TIMESTAMP + to_seconds(i * 17 % 86400) AS event_ts,
        d::DATE AS dt,
        'transactions-' || strftime(d, '%Y%m%d') AS batch_id,
        'rev-a' AS revision,
        CASE WHEN i % 10 = 0 THEN NULL ELSE d::DATE - 1 END AS snapshot_cutoff,
        (i % 7)::BIGINT AS txn_count_24h,
        (200 + i % 50)::DOUBLE AS amount_mean_30d,
        CASE WHEN i % 10 = 0 THEN NULL ELSE 'DE' END AS usual_country
    FROM (VALUES (DATE '2026-01-05', 2600), (DATE '2026-01-06', 1300)) AS days(d, n),
         range(0, 2600) AS r(i)
    WHERE i < n
)
"""


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    versions: dict[str, model_registry.ChampionRef]


def _training_frame() -> pd.DataFrame:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features")
    con.execute(FEATURES_SQL)
    frame = con.execute("SELECT * FROM features.transaction_features").df()
    con.close()
    return frame


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """One sklearn pipeline registered twice: v1 `champion` (threshold 0.5), v2 `challenger`
    (threshold 0.7), resolved through `model_registry` exactly as the nightly resolves them."""
    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    frame = _training_frame()
    label = ((frame["amount"] > 600) & (frame["channel"] == "online")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "txn_count_24h"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=500))])
    pipeline.fit(frame, label)
    client = model_registry.client(tracking_uri)
    experiment = model_registry.ensure_experiment(client, MODEL, tracking_uri)
    with model_registry.tracking(tracking_uri) as mlflow:
        with mlflow.start_run(experiment_id=experiment):
            logged = mlflow.sklearn.log_model(
                pipeline, name="model", pip_requirements=["scikit-learn"]
            )
        for threshold, alias in (("0.5", "champion"), ("0.7", "challenger")):
            version = mlflow.register_model(logged.model_uri, MODEL).version
            client.set_model_version_tag(MODEL, version, "decision_threshold", threshold)
            client.set_model_version_tag(MODEL, version, "training_cutoff", "2026-01-04")
            client.set_registered_model_alias(MODEL, alias, version)
    versions = {
        "1": model_registry.resolve_champion(tracking_uri),
        "2": model_registry.resolve_champion(tracking_uri, alias="challenger"),
    }
    assert {v: (ref.version, ref.decision_threshold) for v, ref in versions.items()} == {
        "1": ("1", 0.5),
        "2": ("2", 0.7),
    }
    return Registry(tracking_uri, versions)


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.unit),
        pytest.param("s3", marks=pytest.mark.integration),
    ]
)
def any_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings whose score table lives in the folder store or in an S3 bucket over HTTP."""
    if request.param == "local":
        return settings
    return _on_s3(settings, request.getfixturevalue("s3_store"))


def _on_s3(settings: Settings, store: S3Store) -> Settings:
    """`settings` pointed at the moto bucket, with the credentials the server was started with
    (delta-rs reads them from the environment, DuckDB from the settings)."""
    return settings.model_copy(
        update={
            "bucket": store.bucket,
            "aws_endpoint_url": store.client.meta.endpoint_url,
            **Settings.from_env().model_dump(
                include={"aws_access_key_id", "aws_secret_access_key", "aws_region"}
            ),
        }
    )


def _load_features(settings: Settings) -> None:
    with warehouse.connect(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        con.execute(FEATURES_SQL)


def _query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with warehouse.connect(settings, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _score(
    settings: Settings, registry: Registry, day: date, version: str, run_id: str
) -> score.ScoreResult:
    return score.score_day(
        day,
        settings=settings,
        champion=registry.versions[version],
        load_model=model_registry.load_model,
        run_id=run_id,
        chunk_rows=1000,
    )


def test_scores_day_with_champion_counts_and_decisions(
    any_settings: Settings, registry: Registry
) -> None:
    _load_features(any_settings)
    result = _score(any_settings, registry, DAY1, "1", "run-1")

    assert (result.rows_to_score, result.rows_scored) == (ROWS[DAY1], ROWS[DAY1])
    assert (result.model_name, result.model_version, result.no_model_yet) == (MODEL, "1", False)
    day_row = _query(
        any_settings,
        "SELECT rows_to_score, rows_scored, model_name, model_version, no_model_yet "
        "FROM meta.days WHERE day = ?",
        [DAY1],
    )
    assert day_row == [(ROWS[DAY1], ROWS[DAY1], MODEL, "1", False)]

    published = score_table.read_scores(any_settings, DAY1)
    assert len(published) == ROWS[DAY1] and published["transaction_id"].is_unique
    assert list(published.columns) == score_table.SCORE_SCHEMA.names
    assert set(published["dt"]) == {DAY1}
    # The scores are the champion's own predictions on the feature rows, not a copy of a column.
    frame = _training_frame()
    features = frame[frame["dt"] == pd.Timestamp(DAY1)]
    expected = model_registry.load_model(registry.versions["1"]).predict_proba(features)[:, 1]
    merged = published.merge(
        pd.DataFrame({"transaction_id": features["transaction_id"], "expected": expected})
    )
    assert len(merged) == ROWS[DAY1]
    np.testing.assert_allclose(merged["score"], merged["expected"], rtol=1e-9)
    assert (published["decision"] == (published["score"] >= 0.5)).all()
    assert 0 < published["decision"].sum() < len(published)
    assert published["snapshot_cutoff"].isna().sum() == ROWS[DAY1] // 10
    assert str(published["scored_at"].dtype) == "datetime64[us, UTC]"
    assert set(published["scoring_run_id"]) == {"run-1"}

    in_duckdb = _query(
        any_settings,
        "SELECT count(*), sum(score), count(DISTINCT model_version) "
        "FROM scores.transaction_scores WHERE dt = ?",
        [DAY1],
    )[0]
    assert in_duckdb[0] == ROWS[DAY1] and in_duckdb[2] == 1
    assert in_duckdb[1] == pytest.approx(published["score"].sum())


def test_rescoring_a_day_replaces_it_atomically_and_keeps_history(
    any_settings: Settings, registry: Registry
) -> None:
    _load_features(any_settings)
    _score(any_settings, registry, DAY1, "1", "run-1")
    first = _score(any_settings, registry, DAY2, "1", "run-1")
    before = score_table.read_scores(any_settings)

    again = _score(any_settings, registry, DAY1, "2", "run-2")

    assert again.table_version == first.table_version + 1
    after = score_table.read_scores(any_settings)
    assert len(after) == ROWS[DAY1] + ROWS[DAY2] and after["transaction_id"].is_unique
    day1 = after[after["dt"] == DAY1]
    # Only the new run's rows for the re-scored day: no mix of old and new.
    assert set(day1["scoring_run_id"]) == {"run-2"}
    assert set(day1["model_version"]) == {"2"}
    assert (day1["decision"] == (day1["score"] >= 0.7)).all()
    # The other day is untouched, row for row.
    untouched = before[before["dt"] == DAY2].sort_values("transaction_id", ignore_index=True)
    pd.testing.assert_frame_equal(
        after[after["dt"] == DAY2].sort_values("transaction_id", ignore_index=True), untouched
    )
    # Time travel: the version before the re-run still shows the old scores of DAY1.
    old = score_table.read_scores(any_settings, DAY1, version=first.table_version)
    assert len(old) == ROWS[DAY1] and set(old["scoring_run_id"]) == {"run-1"}

    # The commit names the run and model that produced it. Read from the log through the
    # object store: DeltaTable.history() hangs against moto's server (delta-rs + moto issue).
    commit = objectstore.from_settings(any_settings).get_bytes(
        f"{score_table.SCORE_TABLE_KEY}/_delta_log/{again.table_version:020d}.json"
    )
    info = next(
        json.loads(line)["commitInfo"]
        for line in commit.decode().splitlines()
        if "commitInfo" in json.loads(line)
    )
    assert (info["scoring_run_id"], info["model_version"], info["dt"]) == (
        "run-2",
        "2",
        "2026-01-05",
    )

    counts = _query(
        any_settings,
        "SELECT dt, count(*), count(DISTINCT transaction_id), max(scoring_run_id) "
        "FROM scores.transaction_scores GROUP BY dt ORDER BY dt",
    )
    assert counts == [
        (DAY1, ROWS[DAY1], ROWS[DAY1], "run-2"),
        (DAY2, ROWS[DAY2], ROWS[DAY2], "run-1"),
    ]
    latest = _query(
        any_settings, "SELECT count(*), count(DISTINCT transaction_id) FROM scores.latest"
    )
    assert latest == [(ROWS[DAY1] + ROWS[DAY2], ROWS[DAY1] + ROWS[DAY2])]


@pytest.mark.unit
def test_no_model_yet_marks_the_day_and_removes_nothing(
    settings: Settings, registry: Registry
) -> None:
    _load_features(settings)
    # A registry where nothing was promoted yet resolves no champion.
    champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    assert champion is None
    result = score.score_day(
        DAY1,
        settings=settings,
        champion=champion,
        load_model=model_registry.load_model,
        run_id="run-0",
    )
    assert result.no_model_yet and result.rows_scored == 0 and result.table_version is None
    with pytest.raises(score_table.ScoreTableNotFound, match="no score table"):
        score_table.read_scores(settings)

    published = _score(settings, registry, DAY2, "1", "run-1")
    again = score.score_day(
        DAY2, settings=settings, champion=None, load_model=model_registry.load_model, run_id="run-3"
    )
    assert again.no_model_yet
    location = score_table.score_table_location(settings)
    assert DeltaTable(location.uri).version() == published.table_version
    kept = score_table.read_scores(settings, DAY2)
    assert len(kept) == ROWS[DAY2] and set(kept["scoring_run_id"]) == {"run-1"}

    days = _query(
        settings,
        "SELECT day, no_model_yet, rows_to_score, rows_scored, model_version FROM meta.days "
        "ORDER BY day",
    )
    assert days == [
        (DAY1, True, ROWS[DAY1], None, None),
        (DAY2, True, ROWS[DAY2], ROWS[DAY2], "1"),
    ]
    assert _query(
        settings, "SELECT count(*) FROM scores.transaction_scores WHERE dt = ?", [DAY1]
    ) == [(0,)]

    _score(settings, registry, DAY1, "1", "run-4")
    assert _query(settings, "SELECT no_model_yet FROM meta.days WHERE day = ?", [DAY1]) == [
        (False,)
    ]


def test_mismatching_table_schema_fails_clearly_and_writes_nothing(
    any_settings: Settings, registry: Registry
) -> None:
    _load_features(any_settings)
    location = score_table.score_table_location(any_settings)
    foreign = pa.table(
        {
            "dt": pa.array([DAY1]),
            "transaction_id": pa.array(["x"]),
            "score": pa.array(["high"]),
        }
    )
    write_deltalake(
        location.uri, foreign, partition_by=["dt"], storage_options=location.storage_options
    )

    with pytest.raises(score_table.ScoreTableSchemaError) as raised:
        _score(any_settings, registry, DAY1, "1", "run-1")
    message = str(raised.value)
    assert "column score is string" in message and "expected double" in message
    assert "missing column customer_id" in message

    table = DeltaTable(location.uri, storage_options=location.storage_options)
    assert table.version() == 0 and table.to_pyarrow_table().num_rows == 1
    assert _query(any_settings, "SELECT count(*) FROM scores.transaction_scores") == [(0,)]
    assert _query(any_settings, "SELECT count(*) FROM meta.days WHERE rows_scored IS NOT NULL") == [
        (0,)
    ]


@pytest.mark.unit
def test_duplicate_feature_rows_fail_the_count_check_and_publish_nothing(
    settings: Settings, registry: Registry
) -> None:
    _load_features(settings)
    with warehouse.connect(settings) as con:
        con.execute(
            "INSERT INTO features.transaction_features SELECT * FROM "
            "features.transaction_features WHERE dt = ? ORDER BY transaction_id LIMIT 2",
            [DAY1],
        )

    with pytest.raises(score_table.ScoreCountMismatch, match="2 duplicate transaction rows"):
        _score(settings, registry, DAY1, "1", "run-1")
    with pytest.raises(score_table.ScoreTableNotFound):
        score_table.read_scores(settings)
    assert _query(settings, "SELECT count(*) FROM scores.transaction_scores") == [(0,)]


@pytest.mark.unit
def test_missing_features_table_says_to_build_dbt_first(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="Build the dbt models for 2026-01-05"):
        score.score_day(
            DAY1, settings=settings, champion=None, load_model=lambda ref: None, run_id="r"
        )


@pytest.mark.unit
def test_champion_without_threshold_is_refused(settings: Settings, registry: Registry) -> None:
    _load_features(settings)
    broken = dataclasses.replace(registry.versions["1"], decision_threshold=float("nan"))
    with pytest.raises(ValueError, match="decision_threshold nan"):
        score.score_day(
            DAY1,
            settings=settings,
            champion=broken,
            load_model=model_registry.load_model,
            run_id="r",
        )


@pytest.mark.unit
def test_scores_and_the_warehouse_are_readable_while_another_process_writes(
    settings: Settings, registry: Registry
) -> None:
    """Nothing locks readers out: another process in the middle of a write transaction leaves
    this one reading the warehouse's committed rows and the score table."""
    _load_features(settings)
    _score(settings, registry, DAY1, "1", "run-1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from mlpipeline import warehouse\n"
            "from mlpipeline.core.config import Settings\n"
            "with warehouse.connect(Settings.under(Path(sys.argv[1]))) as c:\n"
            "    c.execute('BEGIN TRANSACTION')\n"
            "    c.execute('DELETE FROM scores.transaction_scores')\n"
            "    print('holding', flush=True)\n"
            "    time.sleep(60)\n",
            str(settings.data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        counted = _query(settings, "SELECT count(*) FROM scores.transaction_scores")
        assert counted == [(ROWS[DAY1],)]
        published = score_table.read_scores(settings, DAY1)
        assert len(published) == ROWS[DAY1]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.integration
def test_s3_commits_are_put_if_absent(
    s3_store: S3Store, registry: Registry, settings: Settings
) -> None:
    """A writer working from a stale table version cannot overwrite a newer commit on S3."""
    s3_settings = _on_s3(settings, s3_store)
    _load_features(s3_settings)
    _score(s3_settings, registry, DAY1, "1", "run-1")
    location = score_table.score_table_location(s3_store)
    assert location == score_table.score_table_location(s3_settings)
    stale = DeltaTable(location.uri, storage_options=location.storage_options)
    _score(s3_settings, registry, DAY1, "2", "run-2")

    rows = pa.Table.from_pandas(score_table.read_scores(s3_store, DAY1), preserve_index=False)
    with pytest.raises(CommitFailedError):
        write_deltalake(
            stale,
            rows.cast(score_table.SCORE_SCHEMA),
            mode="overwrite",
            predicate="dt = '2026-01-05'",
        )
    assert set(score_table.read_scores(s3_store, DAY1)["scoring_run_id"]) == {"run-2"}
    assert any(
        key.startswith("scores/transaction_scores/_delta_log/") for key in s3_store.list("scores/")
    )


MEMORY_LIMIT = "SELECT current_setting('memory_limit')"


class _ObservedModel:
    """The real champion, recording what scoring feeds it and what DuckDB's memory cap is then
    on the connection scoring opened (`opened`, filled by the test)."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.opened: list[duckdb.DuckDBPyConnection] = []
        self.chunks: list[int] = []
        self.memory_limits: set[str] = set()
        self.left_with: str | None = None

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.chunks.append(len(frame))
        self.memory_limits.add(self.opened[-1].execute(MEMORY_LIMIT).fetchall()[0][0])
        return self.model.predict_proba(frame)


@pytest.mark.unit
def test_a_big_day_streams_in_chunks_under_a_duckdb_memory_cap(
    settings: Settings, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory follows the chunk, not the day: the model never sees more than `chunk_rows` rows,
    DuckDB runs under the configured cap (and gets its own setting back), and the chunks are
    committed at once, with the statistics readers skip files by."""
    _load_features(settings)
    observed = _ObservedModel(model_registry.load_model(registry.versions["1"]))
    opener = warehouse.connect

    @contextmanager
    def recorded(*args: object, **kwargs: object) -> Iterator[duckdb.DuckDBPyConnection]:
        with opener(*args, **kwargs) as con:
            observed.opened.append(con)
            yield con
            observed.left_with = con.execute(MEMORY_LIMIT).fetchall()[0][0]

    monkeypatch.setattr(warehouse, "connect", recorded)
    result = score.score_day(
        DAY1,
        settings=settings,
        champion=registry.versions["1"],
        load_model=lambda ref: observed,
        run_id="run-chunks",
        chunk_rows=300,
        memory_limit="64MB",
    )

    assert observed.chunks == [300] * 8 + [200] and result.rows_scored == ROWS[DAY1]
    assert observed.memory_limits == {"61.0 MiB"}
    assert observed.left_with != "61.0 MiB"
    location = score_table.score_table_location(settings)
    table = DeltaTable(location.uri)
    assert table.version() == result.table_version == 0
    # Each file carries the statistics readers skip files by, read back through delta-rs.
    added = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert sum(f["num_records"] for f in added) == ROWS[DAY1]
    assert all(f["null_count.transaction_id"] == 0 for f in added)
    assert all(0 <= f["min.score"] <= f["max.score"] <= 1 for f in added)
    ids = sorted(score_table.read_scores(settings, DAY1)["transaction_id"])
    assert min(f["min.transaction_id"] for f in added) == ids[0]
    assert max(f["max.transaction_id"] for f in added) == ids[-1]
    published = score_table.read_scores(settings, DAY1)
    assert len(published) == ROWS[DAY1] and published["transaction_id"].is_unique
    assert _query(
        settings, "SELECT count(*) FROM scores.transaction_scores WHERE dt = ?", [DAY1]
    ) == [(ROWS[DAY1],)]


def test_a_reader_during_a_rescore_sees_the_old_day_or_the_new_never_a_mix(
    any_settings: Settings, registry: Registry
) -> None:
    """A downstream reader polls the day straight from the object store while it is re-scored:
    every read holds all of the day's rows from one run, never a mix and never a part."""
    _load_features(any_settings)
    location = score_table.score_table_location(any_settings)
    write_deltalake(  # an empty table whose days span several files
        location.uri,
        score_table.SCORE_SCHEMA.empty_table(),
        partition_by=["dt"],
        configuration={"delta.targetFileSize": "20000"},
        storage_options=location.storage_options,
    )
    _score(any_settings, registry, DAY1, "1", "run-old")
    table = DeltaTable(location.uri, storage_options=location.storage_options)
    reads: list[tuple[float, int, frozenset, bool]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                frame = score_table.read_scores(any_settings, DAY1)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)
                return
            reads.append(
                (
                    time.monotonic(),
                    len(frame),
                    frozenset(frame["scoring_run_id"]),
                    frame["transaction_id"].is_unique,
                )
            )

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    while len(reads) < 2 and not failures:
        time.sleep(0.01)
    began = time.monotonic()
    score.score_day(
        DAY1,
        settings=any_settings,
        champion=registry.versions["2"],
        load_model=model_registry.load_model,
        run_id="run-new",
        chunk_rows=100,
    )
    ended = time.monotonic()
    while not failures and sum(at > ended for at, *_ in reads) < 2:
        time.sleep(0.01)
    stop.set()
    reader.join(timeout=30)

    assert failures == []
    table.update_incremental()
    assert len(table.file_uris([("dt", "=", DAY1.isoformat())])) > 1
    states = [(rows, runs, unique) for _, rows, runs, unique in reads]
    old = (ROWS[DAY1], frozenset({"run-old"}), True)
    new = (ROWS[DAY1], frozenset({"run-new"}), True)
    assert set(states) == {old, new}
    # Old until the switch, new from then on: one atomic step, no flapping.
    switch = states.index(new)
    assert states[:switch] == [old] * switch and set(states[switch:]) == {new}
    assert sum(began <= at <= ended for at, *_ in reads) >= 2  # it really read during the re-score


class _FailingModel:
    """The real champion until its third chunk, then a crash (a killed worker, a bad row)."""

    def __init__(self, model: object) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            raise MemoryError("the model ran out of memory on chunk 3")
        return self.model.predict_proba(frame)


@pytest.mark.unit
def test_a_rescore_that_fails_part_way_publishes_nothing(
    settings: Settings, registry: Registry
) -> None:
    """Chunks already written by a failed re-score never become visible: the table keeps its
    version and the day its old rows, the warehouse copy too, and the error is the model's."""
    _load_features(settings)
    published = _score(settings, registry, DAY1, "1", "run-old")
    failing = _FailingModel(model_registry.load_model(registry.versions["2"]))

    with pytest.raises(MemoryError, match="on chunk 3"):
        score.score_day(
            DAY1,
            settings=settings,
            champion=registry.versions["2"],
            load_model=lambda ref: failing,
            run_id="run-new",
            chunk_rows=1000,
        )

    location = score_table.score_table_location(settings)
    assert DeltaTable(location.uri).version() == published.table_version
    kept = score_table.read_scores(settings, DAY1)
    assert len(kept) == ROWS[DAY1] and set(kept["scoring_run_id"]) == {"run-old"}
    assert _query(
        settings, "SELECT count(*), max(scoring_run_id) FROM scores.transaction_scores"
    ) == [(ROWS[DAY1], "run-old")]


@pytest.mark.unit
def test_backfilled_days_are_scored_with_the_current_champion_and_record_it(
    settings: Settings, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly's score task resolves `champion` when it runs, whatever the day: re-running
    an older day after a promotion scores it with the new version and records that version in
    the rows, in meta.days and in the commit."""
    _load_features(settings)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    client = model_registry.client(registry.tracking_uri)
    assert model_registry.resolve_champion(registry.tracking_uri).version == "1"
    try:
        night = nightly.score(DAY2.isoformat(), "scheduled__2026-01-06")
        client.set_registered_model_alias(MODEL, "champion", "2")  # a promotion
        backfill = nightly.score(DAY1.isoformat(), "backfill__2026-01-05")
    finally:
        client.set_registered_model_alias(MODEL, "champion", "1")

    assert (night["model_version"], backfill["model_version"]) == ("1", "2")
    scores = score_table.read_scores(settings)
    by_day = scores.groupby("dt")[["model_version", "scoring_run_id"]].agg(set).to_dict("index")
    assert by_day == {
        DAY1: {"model_version": {"2"}, "scoring_run_id": {"backfill__2026-01-05"}},
        DAY2: {"model_version": {"1"}, "scoring_run_id": {"scheduled__2026-01-06"}},
    }
    day1 = scores[scores["dt"] == DAY1]
    assert (day1["decision"] == (day1["score"] >= 0.7)).all()  # version 2's own threshold
    assert _query(
        settings, "SELECT day, model_version, rows_scored FROM meta.days ORDER BY day"
    ) == [(DAY1, "2", ROWS[DAY1]), (DAY2, "1", ROWS[DAY2])]
    log = objectstore.from_settings(settings).get_bytes(
        f"{score_table.SCORE_TABLE_KEY}/_delta_log/{backfill['table_version']:020d}.json"
    )
    commit = next(
        json.loads(line)["commitInfo"]
        for line in log.decode().splitlines()
        if "commitInfo" in json.loads(line)
    )
    assert (commit["dt"], commit["model_version"]) == ("2026-01-05", "2")


@pytest.mark.unit
def test_a_day_without_transactions_is_scored_empty_and_replaces_earlier_rows(
    settings: Settings, registry: Registry
) -> None:
    """A producer may deliver a day with no data; with a champion the day is still scored (zero
    rows, recorded), and a re-run after the day lost its rows removes the old scores."""
    _load_features(settings)
    empty_day = date(2026, 1, 7)
    first = _score(settings, registry, empty_day, "1", "run-empty")
    assert (first.rows_to_score, first.rows_scored, first.table_version) == (0, 0, 0)
    assert score_table.read_scores(settings, empty_day).empty

    _score(settings, registry, DAY1, "1", "run-1")
    with warehouse.connect(settings) as con:
        con.execute("DELETE FROM features.transaction_features WHERE dt = ?", [DAY1])
    again = _score(settings, registry, DAY1, "1", "run-2")

    assert (again.rows_scored, again.table_version) == (0, 2)
    assert score_table.read_scores(settings, DAY1).empty
    assert len(score_table.read_scores(settings, DAY1, version=1)) == ROWS[DAY1]
    assert _query(settings, "SELECT count(*) FROM scores.transaction_scores") == [(0,)]
    assert _query(
        settings,
        "SELECT day, rows_to_score, rows_scored, model_version FROM meta.days ORDER BY day",
    ) == [(DAY1, 0, 0, "1"), (empty_day, 0, 0, "1")]
