"""Batch scoring of one processing day, and the score table downstream apps read.

The contract is a Delta Lake table at `scores/transaction_scores/` in the object store,
partitioned by `dt`: a day is replaced by one atomic commit (readers see the old rows or the
new, never a mix), its schema is enforced and earlier versions stay readable (time travel).
The same rows land in DuckDB (`scores.transaction_scores`, view `scores.latest`) for analysts.

Scoring reads `features.transaction_features`, the dbt model training reads too, so the model
sees exactly the features it was trained on: there is no second copy of that join here.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, SchemaMismatchError, TableNotFoundError

from mlpipeline import warehouse
from mlpipeline.config import Settings
from mlpipeline.days import parse_day
from mlpipeline.meta import ensure_meta, update_day, utcnow
from mlpipeline.objectstore import LocalStore, ObjectStore, S3Store

log = logging.getLogger(__name__)

SCORE_TABLE_KEY = "scores/transaction_scores"
FEATURES_TABLE = "features.transaction_features"
DEFAULT_CHUNK_ROWS = 65_536
_DUCKDB_VECTOR_ROWS = 2048

# The downstream contract. Timestamps are UTC instants (Delta `timestamp`, readable by every
# Delta reader); DuckDB keeps them as naive UTC like the rest of the warehouse.
SCORE_SCHEMA = pa.schema(
    [
        pa.field("dt", pa.date32(), nullable=False),
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("decision", pa.bool_(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("snapshot_cutoff", pa.date32(), nullable=True),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("revision", pa.string(), nullable=False),
        pa.field("scoring_run_id", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

DDL = """
CREATE SCHEMA IF NOT EXISTS scores;
CREATE TABLE IF NOT EXISTS scores.transaction_scores (
    dt DATE NOT NULL,
    transaction_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    decision BOOLEAN NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    snapshot_cutoff DATE,
    batch_id VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    scoring_run_id VARCHAR NOT NULL,
    scored_at TIMESTAMP NOT NULL
);
CREATE OR REPLACE VIEW scores.latest AS
SELECT *
FROM scores.transaction_scores
QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY scored_at DESC, dt DESC) = 1;
"""


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


class ScoreTableSchemaError(ValueError):
    """The Delta table at the score location does not have the contract's schema."""


class ScoreTableNotFound(LookupError):
    """No score table exists at the location yet."""


class ScoreCountMismatch(RuntimeError):
    """The rows scored or published differ from the rows there were to score."""


@dataclass(frozen=True)
class DeltaLocation:
    uri: str
    storage_options: dict[str, str] | None


@dataclass(frozen=True)
class ScoreResult:
    day: date
    no_model_yet: bool
    rows_to_score: int
    rows_scored: int
    model_name: str | None
    model_version: str | None
    scoring_run_id: str
    table_uri: str
    table_version: int | None


def score_table_location(target: Settings | ObjectStore) -> DeltaLocation:
    """Where the score table lives for these settings or this store, and how delta-rs reaches it.

    The folder store gives a local path. S3 gives `s3://bucket/...` plus the endpoint, plain
    HTTP when the endpoint is `http://` (MinIO, moto) and the region boto3 resolved, so
    delta-rs talks to the same service as the rest of the pipeline. Credentials come from the
    usual AWS variables, which delta-rs reads itself.
    """
    if isinstance(target, Settings):
        if target.bucket:
            import boto3

            return _s3_location(
                target.bucket, target.aws_endpoint_url, boto3.session.Session().region_name
            )
        return DeltaLocation(str(target.local_store_root.resolve() / SCORE_TABLE_KEY), None)
    if isinstance(target, LocalStore):
        return DeltaLocation(str(target.root.resolve() / SCORE_TABLE_KEY), None)
    if isinstance(target, S3Store):
        endpoint = target.client.meta.endpoint_url
        # boto3 names AWS's own endpoint even when none was configured; delta-rs picks the
        # right one for the region itself, so only a custom endpoint is passed on.
        if (urlparse(endpoint).hostname or "").endswith(".amazonaws.com"):
            endpoint = None
        return _s3_location(target.bucket, endpoint, target.client.meta.region_name)
    raise TypeError(
        f"cannot locate the score table for {type(target).__name__}: pass Settings, a "
        "LocalStore or an S3Store"
    )


def _s3_location(bucket: str, endpoint: str | None, region: str | None) -> DeltaLocation:
    # deltalake 1.x commits each log entry with a put-if-absent (If-None-Match: *), so two
    # writers can never both claim a version and no locking provider or unsafe rename is
    # needed. `aws_conditional_put: etag` also allows If-Match updates where delta-rs uses them.
    options = {"aws_conditional_put": "etag"}
    if region:
        options["AWS_REGION"] = region
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return DeltaLocation(f"s3://{bucket}/{SCORE_TABLE_KEY}", options)


def ensure_score_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def score_day(
    day: str | date | datetime,
    *,
    settings: Settings,
    champion: ChampionLike | None,
    load_model: ModelLoader,
    run_id: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ScoreResult:
    """Score every transaction of day D with the champion and publish the day atomically.

    `champion` is resolved once by the caller to an exact version (None: no model yet), so a
    promotion during the run cannot mix two models in one day. The DuckDB rows are replaced in
    one transaction that commits only after the Delta commit succeeded, so a failure before the
    Delta commit leaves both as they were; a re-run always replaces the whole day again.
    """
    day = parse_day(day)
    location = score_table_location(settings)
    with warehouse.connect(settings) as con:
        warehouse.ensure_schemas(con)
        ensure_meta(con)
        ensure_score_tables(con)
        rows_to_score = _count_features(con, day, settings)
        if champion is None:
            return _record_no_model(con, day, rows_to_score, run_id, location)
        threshold = _threshold(champion)
        _check_table_schema(location)
        log.info(
            "scoring %d transactions of %s with %s version %s (decision threshold %.4f)",
            rows_to_score,
            day,
            champion.name,
            champion.version,
            threshold,
        )
        model = load_model(champion)
        with con.cursor() as reader, con.cursor() as writer:
            writer.begin()
            try:
                writer.execute("DELETE FROM scores.transaction_scores WHERE dt = ?", [day])
                _score_into(
                    reader,
                    writer,
                    model,
                    day=day,
                    champion=champion,
                    threshold=threshold,
                    run_id=run_id,
                    rows_to_score=rows_to_score,
                    chunk_rows=chunk_rows,
                )
                rows_scored = _check_counts(writer, day, rows_to_score)
                version = _publish(
                    writer,
                    location,
                    day,
                    champion=champion,
                    run_id=run_id,
                    rows_scored=rows_scored,
                    batch_rows=chunk_rows,
                )
                update_day(
                    writer,
                    day,
                    no_model_yet=False,
                    rows_to_score=rows_to_score,
                    rows_scored=rows_scored,
                    model_name=champion.name,
                    model_version=str(champion.version),
                )
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
    log.info(
        "published %d scores for %s as version %d of %s", rows_scored, day, version, location.uri
    )
    return ScoreResult(
        day=day,
        no_model_yet=False,
        rows_to_score=rows_to_score,
        rows_scored=rows_scored,
        model_name=champion.name,
        model_version=str(champion.version),
        scoring_run_id=run_id,
        table_uri=location.uri,
        table_version=version,
    )


def read_scores(
    target: Settings | ObjectStore,
    day: str | date | datetime | None = None,
    *,
    version: int | None = None,
) -> pd.DataFrame:
    """The published scores (one day, or all), straight from the Delta table, without DuckDB.

    Downstream apps use this while the nightly holds the warehouse. `version` reads an
    earlier table version (time travel), e.g. the scores as they were before a re-run.
    """
    location = score_table_location(target)
    try:
        table = DeltaTable(location.uri, version=version, storage_options=location.storage_options)
    except TableNotFoundError as exc:
        raise ScoreTableNotFound(
            f"no score table at {location.uri}: no day has been scored there yet. Check the "
            "bucket / data folder the reader points at, or run scoring for a day first."
        ) from exc
    filters = None if day is None else [("dt", "=", parse_day(day))]
    return table.to_pandas(filters=filters)


def _count_features(con: duckdb.DuckDBPyConnection, day: date, settings: Settings) -> int:
    try:
        row = con.execute(f"SELECT count(*) FROM {FEATURES_TABLE} WHERE dt = ?", [day]).fetchall()[
            0
        ]
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            f"cannot read {FEATURES_TABLE} in the warehouse {settings.duckdb_path}: {exc}. "
            f"Build the dbt models for {day} (mlpipeline.transform.build) before scoring."
        ) from exc
    return int(row[0])


def _record_no_model(
    con: duckdb.DuckDBPyConnection,
    day: date,
    rows_to_score: int,
    run_id: str,
    location: DeltaLocation,
) -> ScoreResult:
    """Mark the day `no_model_yet` and write nothing: scores already published stay."""
    kept, model_name, model_version = con.execute(
        "SELECT count(*), any_value(model_name), any_value(model_version) "
        "FROM scores.transaction_scores WHERE dt = ?",
        [day],
    ).fetchall()[0]
    update_day(con, day, no_model_yet=True, rows_to_score=rows_to_score)
    if kept:
        log.warning(
            "no champion model resolves; %s keeps the %d scores published earlier by %s "
            "version %s (nothing was removed). Promote or release a champion and re-run "
            "scoring for %s to replace them.",
            day,
            kept,
            model_name,
            model_version,
            day,
        )
    else:
        log.warning(
            "no champion model yet: %s (%d transactions) is marked no_model_yet and gets no "
            "scores. They appear once a model is promoted and scoring re-runs for the day.",
            day,
            rows_to_score,
        )
    return ScoreResult(
        day=day,
        no_model_yet=True,
        rows_to_score=rows_to_score,
        rows_scored=0,
        model_name=None,
        model_version=None,
        scoring_run_id=run_id,
        table_uri=location.uri,
        table_version=None,
    )


def _threshold(champion: ChampionLike) -> float:
    try:
        value = float(champion.decision_threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"champion {champion.name} version {champion.version} has decision_threshold "
            f"{champion.decision_threshold!r}; expected a number in [0, 1] from the version's "
            "`decision_threshold` tag. Set the tag (evaluation stores it) or roll the champion "
            "back to a version that has one."
        )
    return value


def _check_table_schema(location: DeltaLocation) -> None:
    """Refuse to write to a table whose schema or partitioning is not the contract's."""
    try:
        table = DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        return
    expected = {
        f.name: (_delta_type(f), f.nullable) for f in Schema.from_arrow(SCORE_SCHEMA).fields
    }
    actual = {f.name: (_delta_type(f), f.nullable) for f in table.schema().fields}
    problems = [
        f"missing column {name} ({kind})"
        for name, (kind, _) in expected.items()
        if name not in actual
    ]
    problems += [
        f"column {name} is {actual[name][0]} {'NULL' if actual[name][1] else 'NOT NULL'}, "
        f"expected {kind} {'NULL' if nullable else 'NOT NULL'}"
        for name, (kind, nullable) in expected.items()
        if name in actual and actual[name] != (kind, nullable)
    ]
    problems += [f"unexpected column {name}" for name in actual if name not in expected]
    partitions = table.metadata().partition_columns
    if partitions != ["dt"]:
        problems.append(f"partitioned by {partitions}, expected ['dt']")
    if problems:
        raise ScoreTableSchemaError(
            f"the score table at {location.uri} (version {table.version()}) does not match the "
            f"score contract: {'; '.join(problems)}. Nothing was written. Readers depend on "
            "this schema: migrate the table deliberately (agree with its consumers first) or "
            "move the old table away, then re-run scoring."
        )


def _delta_type(field: Any) -> str:
    return getattr(field.type, "type", None) or str(field.type)


def _score_into(
    reader: duckdb.DuckDBPyConnection,
    writer: duckdb.DuckDBPyConnection,
    model: ProbabilisticModel,
    *,
    day: date,
    champion: ChampionLike,
    threshold: float,
    run_id: str,
    rows_to_score: int,
    chunk_rows: int,
) -> None:
    """Stream the day's feature rows in chunks, score each, insert it into the open transaction.

    `fetch_df_chunk` streams without ORDER BY and converts types exactly as `.df()` does when
    training reads its rows (DECIMAL to float, DATE/TIMESTAMP to datetime64), so the model
    gets the same dtypes it was fitted on while memory stays bounded by one chunk.
    """
    result = reader.execute(f"SELECT * FROM {FEATURES_TABLE} WHERE dt = ?", [day])
    vectors = max(1, math.ceil(chunk_rows / _DUCKDB_VECTOR_ROWS))
    scored_at = utcnow()
    progress = _Progress(rows_to_score, f"{day} with {champion.name} v{champion.version}")
    done = 0
    while len(frame := result.fetch_df_chunk(vectors)):
        scores = _positive_scores(model, frame, champion, first_row=done)
        chunk = _score_rows(frame, scores, threshold, champion, run_id, scored_at)
        writer.register("score_chunk", chunk)
        try:
            writer.execute(
                "INSERT INTO scores.transaction_scores BY NAME SELECT * FROM score_chunk"
            )
        finally:
            writer.unregister("score_chunk")
        done += chunk.num_rows
        progress.update(done)


def _positive_scores(
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


def _score_rows(
    frame: pd.DataFrame,
    scores: np.ndarray,
    threshold: float,
    champion: ChampionLike,
    run_id: str,
    scored_at: datetime,
) -> pa.Table:
    n = len(frame)
    return pa.table(
        {
            "dt": pa.array(frame["dt"]).cast(pa.date32()),
            "transaction_id": pa.array(frame["transaction_id"], pa.string()),
            "customer_id": pa.array(frame["customer_id"], pa.string()),
            "score": pa.array(scores, pa.float64()),
            "decision": pa.array(scores >= threshold, pa.bool_()),
            "model_name": pa.repeat(pa.scalar(champion.name, pa.string()), n),
            "model_version": pa.repeat(pa.scalar(str(champion.version), pa.string()), n),
            "snapshot_cutoff": pa.array(frame["snapshot_cutoff"]).cast(pa.date32()),
            "batch_id": pa.array(frame["batch_id"], pa.string()),
            "revision": pa.array(frame["revision"], pa.string()),
            "scoring_run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
            "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), n),
        }
    )


def _check_counts(writer: duckdb.DuckDBPyConnection, day: date, rows_to_score: int) -> int:
    rows, distinct = writer.execute(
        "SELECT count(*), count(DISTINCT transaction_id) "
        "FROM scores.transaction_scores WHERE dt = ?",
        [day],
    ).fetchall()[0]
    if rows != rows_to_score:
        raise ScoreCountMismatch(
            f"scored {rows} rows for {day} but {FEATURES_TABLE} has {rows_to_score}; nothing "
            "was published. Re-run scoring for the day; if it repeats, the features changed "
            "while scoring ran (is another task writing the warehouse outside the pool?)."
        )
    if distinct != rows:
        examples = [
            tid
            for (tid,) in writer.execute(
                "SELECT transaction_id FROM scores.transaction_scores WHERE dt = ? "
                "GROUP BY transaction_id HAVING count(*) > 1 ORDER BY transaction_id LIMIT 5",
                [day],
            ).fetchall()
        ]
        raise ScoreCountMismatch(
            f"{FEATURES_TABLE} has {rows - distinct} duplicate transaction rows for {day} "
            f"(e.g. {examples}); nothing was published. Each transaction must appear once: fix "
            "the duplicates upstream (raw batch or the dbt join), rebuild, then re-run scoring."
        )
    return int(rows)


def _publish(
    writer: duckdb.DuckDBPyConnection,
    location: DeltaLocation,
    day: date,
    *,
    champion: ChampionLike,
    run_id: str,
    rows_scored: int,
    batch_rows: int,
) -> int:
    """Replace day D in the Delta table with one commit, streaming the rows from DuckDB."""
    relation = writer.sql(
        f"SELECT {', '.join(SCORE_SCHEMA.names)} FROM scores.transaction_scores WHERE dt = $day",
        params={"day": day},
    )
    source = relation.to_arrow_reader(batch_rows)
    batches = pa.RecordBatchReader.from_batches(
        SCORE_SCHEMA, (batch.cast(SCORE_SCHEMA) for batch in source)
    )
    lineage = {
        "dt": day.isoformat(),
        "scoring_run_id": run_id,
        "model_name": champion.name,
        "model_version": str(champion.version),
        "rows": str(rows_scored),
    }
    try:
        write_deltalake(
            location.uri,
            batches,
            mode="overwrite",
            predicate=f"dt = '{day.isoformat()}'",
            partition_by=["dt"],
            storage_options=location.storage_options,
            name="transaction_scores",
            description="Fraud score per transaction, one partition per day (dt), replaced "
            "atomically when a day is re-scored.",
            commit_properties=CommitProperties(custom_metadata=lineage),
        )
    except SchemaMismatchError as exc:
        raise ScoreTableSchemaError(
            f"the score table at {location.uri} rejected the rows for {day}: {exc}. Nothing "
            "was published; compare the table's schema with mlpipeline.score.SCORE_SCHEMA."
        ) from exc
    except CommitFailedError as exc:
        raise RuntimeError(
            f"another writer committed to {location.uri} while {day} was being published "
            f"({exc}); nothing of this run is visible. Re-run scoring for {day}."
        ) from exc
    table = DeltaTable(location.uri, storage_options=location.storage_options)
    published = table.to_pyarrow_dataset(partitions=[("dt", "=", day.isoformat())]).count_rows()
    if published != rows_scored:
        raise ScoreCountMismatch(
            f"version {table.version()} of {location.uri} holds {published} rows for {day}, "
            f"expected {rows_scored}. Re-run scoring for {day}: it replaces the day."
        )
    return table.version()


class _Progress:
    """Rows done, rate and time left, logged once per chunk."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        left = (self.total - done) / rate if rate else float("inf")
        log.info(
            "scored %d/%d rows of %s (%.0f rows/s, ~%.0fs left)",
            done,
            self.total,
            self.label,
            rate,
            max(left, 0.0),
        )
