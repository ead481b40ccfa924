"""Batch scoring of one processing day, and the score table downstream apps read.

The contract is a Delta Lake table at `scores/transaction_scores/` in the object store,
partitioned by `dt`: a day is replaced by one atomic commit (readers see the old rows or the
new, never a mix), its schema is enforced and earlier versions stay readable (time travel).
The same rows land in DuckDB (`scores.transaction_scores`, view `scores.latest`) for analysts.

Scoring reads `features.transaction_features`, the dbt model training reads too, so the model
sees exactly the features it was trained on: there is no second copy of that join here.

Memory does not grow with the day: the feature rows stream out of DuckDB in chunks
(`scoring.chunk_rows`), each chunk is scored and appended to the day's new Parquet data files,
which one Delta commit then puts in place of the day's old files; DuckDB works under
`scoring.duckdb_memory_limit`, spilling to disk beyond it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from mlpipeline import warehouse
from mlpipeline.core import objectstore
from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import LocalStore, ObjectStore, S3Store
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import ensure_meta, update_day, utcnow

log = logging.getLogger(__name__)

SCORE_TABLE_KEY = "scores/transaction_scores"
FEATURES_TABLE = "features.transaction_features"
# Rows per Parquet data file of a day (about 40 MB): big enough for readers, small enough to
# stage on local disk before the upload.
_FILE_ROWS = 1_000_000
_MIN_MAX_TYPES = (pa.string(), pa.float64(), pa.date32())
_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)$", re.IGNORECASE)

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
"""
_VIEWS = {
    "scores.latest": "SELECT * FROM scores.transaction_scores QUALIFY row_number() OVER "
    "(PARTITION BY transaction_id ORDER BY scored_at DESC, dt DESC) = 1"
}


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
class ScoringConf:
    """How scoring bounds its memory (pipeline.yaml `scoring:`)."""

    chunk_rows: int
    duckdb_memory_limit: str | None

    @classmethod
    def load(cls) -> ScoringConf:
        conf = pipeline_conf().get("scoring") or {}
        return cls(
            chunk_rows=int(conf.get("chunk_rows", 200_000)),
            duckdb_memory_limit=conf.get("duckdb_memory_limit"),
        )


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
    lake.ensure_views(con, _VIEWS)


def score_day(
    day: str | date | datetime,
    *,
    settings: Settings,
    champion: ChampionLike | None,
    load_model: ModelLoader,
    run_id: str,
    chunk_rows: int | None = None,
    memory_limit: str | None = None,
) -> ScoreResult:
    """Score every transaction of day D with the champion and publish the day atomically.

    `champion` is resolved once by the caller to an exact version (None: no model yet), so a
    promotion during the run cannot mix two models in one day. Chunks stream from DuckDB through
    the model into new Parquet files of the Delta table; one commit then swaps the day's files,
    only once every row of the day was scored exactly once, so any failure before it leaves the
    published day as it was. The committed rows are then copied into DuckDB, with the day's
    `meta.days` record, in one transaction. A re-run replaces the whole day again.
    `chunk_rows` and `memory_limit` default to pipeline.yaml's `scoring:` section.
    """
    day = parse_day(day)
    conf = ScoringConf.load()
    chunk_rows = chunk_rows or conf.chunk_rows
    if chunk_rows < 1:
        raise ValueError(f"scoring chunk_rows must be at least 1, got {chunk_rows}")
    location = score_table_location(settings)
    with (
        warehouse.connect(settings) as con,
        _memory_limit(con, memory_limit or conf.duckdb_memory_limit),
    ):
        warehouse.ensure_schemas(con)
        ensure_meta(con)
        ensure_score_tables(con)
        rows_to_score, distinct = _count_features(con, day, settings)
        if champion is None:
            return _record_no_model(con, day, rows_to_score, run_id, location)
        _check_unique(con, day, rows_to_score, distinct)
        threshold = _threshold(champion)
        _check_table_schema(location)
        log.info(
            "scoring %d transactions of %s with %s version %s (decision threshold %.4f, "
            "chunks of up to %d rows)",
            rows_to_score,
            day,
            champion.name,
            champion.version,
            threshold,
            chunk_rows,
        )
        model = load_model(champion)
        with tempfile.TemporaryDirectory(prefix="scores-") as staging:
            files = _DayFiles(objectstore.from_settings(settings), day, Path(staging))
            chunks = _scored_chunks(
                con,
                model,
                day=day,
                champion=champion,
                threshold=threshold,
                run_id=run_id,
                rows_to_score=rows_to_score,
                chunk_rows=chunk_rows,
            )
            try:
                for rows in chunks:
                    files.write(rows)
                actions = files.close()
                if files.rows != rows_to_score:
                    raise ScoreCountMismatch(
                        f"scored {files.rows} rows for {day} but {FEATURES_TABLE} had "
                        f"{rows_to_score}; nothing was published. Re-run scoring for the day; if "
                        "it repeats, the features changed while scoring ran (is another task "
                        "writing the warehouse outside the pool?)."
                    )
            except BaseException:
                files.discard()
                raise
            version = _commit(location, files, actions, champion=champion, run_id=run_id)
            _copy_to_warehouse(con, files, location, version, champion, rows_to_score)
    log.info(
        "published %d scores for %s as version %d of %s", files.rows, day, version, location.uri
    )
    return ScoreResult(
        day=day,
        no_model_yet=False,
        rows_to_score=rows_to_score,
        rows_scored=files.rows,
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
    table = open_score_table(target, version)
    filters = None if day is None else [("dt", "=", parse_day(day))]
    return table.to_pandas(filters=filters)


def open_score_table(target: Settings | ObjectStore, version: int | None = None) -> DeltaTable:
    """The score table at `version` (default the newest), for readers outside the warehouse."""
    location = score_table_location(target)
    try:
        return DeltaTable(location.uri, version=version, storage_options=location.storage_options)
    except TableNotFoundError as exc:
        raise ScoreTableNotFound(
            f"no score table at {location.uri}: no day has been scored there yet. Check the "
            "bucket / data folder the reader points at, or run scoring for a day first."
        ) from exc


def _count_features(
    con: duckdb.DuckDBPyConnection, day: date, settings: Settings
) -> tuple[int, int]:
    """The day's feature rows and distinct transactions."""
    try:
        rows, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT transaction_id) FROM {FEATURES_TABLE} WHERE dt = ?",
            [day],
        ).fetchall()[0]
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            f"cannot read {FEATURES_TABLE} in the warehouse {warehouse.describe(settings)}: {exc}. "
            f"Build the dbt models for {day} (mlpipeline.features.transform.build) before scoring."
        ) from exc
    return int(rows), int(distinct)


def _check_unique(con: duckdb.DuckDBPyConnection, day: date, rows: int, distinct: int) -> None:
    """One score per transaction: refuse a day whose feature rows repeat a transaction."""
    if distinct == rows:
        return
    examples = [
        tid
        for (tid,) in con.execute(
            f"SELECT transaction_id FROM {FEATURES_TABLE} WHERE dt = ? "
            "GROUP BY transaction_id HAVING count(*) > 1 ORDER BY transaction_id LIMIT 5",
            [day],
        ).fetchall()
    ]
    raise ScoreCountMismatch(
        f"{FEATURES_TABLE} has {rows - distinct} duplicate transaction rows for {day} "
        f"(e.g. {examples}); nothing was scored or published. Each transaction must appear "
        "once: fix the duplicates upstream (raw batch or the dbt join), rebuild, then re-run "
        "scoring."
    )


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


@contextmanager
def _memory_limit(con: duckdb.DuckDBPyConnection, limit: str | None) -> Iterator[None]:
    """Cap DuckDB's memory while scoring (beyond it DuckDB spills to `<warehouse>.tmp`), then
    restore the setting: it belongs to the database instance, not to this connection."""
    if not limit:
        yield
        return
    if not _MEMORY_SIZE.match(str(limit).strip()):
        raise ValueError(
            f"scoring.duckdb_memory_limit {limit!r} is not a size such as '512MB' or '2GiB'; "
            "fix it in mlpipeline/conf/pipeline.yaml"
        )
    previous = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    con.execute(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{previous}'")


def _features_query(con: duckdb.DuckDBPyConnection) -> str:
    """The day's feature rows, DECIMAL columns as DOUBLE.

    Training reads its rows with `.df()`, which turns DECIMAL into float64; casting in DuckDB
    gives the model the same values while the rows stream as Arrow (vectorised, instead of one
    Python Decimal per value).
    """
    schema, table = FEATURES_TABLE.split(".")
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    select = ", ".join(
        f'CAST("{name}" AS DOUBLE) AS "{name}"' if kind.startswith("DECIMAL") else f'"{name}"'
        for name, kind in columns
    )
    return f"SELECT {select} FROM {FEATURES_TABLE} WHERE dt = $day"


def _scored_chunks(
    con: duckdb.DuckDBPyConnection,
    model: ProbabilisticModel,
    *,
    day: date,
    champion: ChampionLike,
    threshold: float,
    run_id: str,
    rows_to_score: int,
    chunk_rows: int,
) -> Iterator[pa.Table]:
    """The day's score rows, chunk by chunk: feature rows stream out of DuckDB as Arrow, so
    memory follows `chunk_rows`, not the size of the day."""
    scored_at = pa.scalar(utcnow(), pa.timestamp("us")).cast(SCORE_SCHEMA.field("scored_at").type)
    progress = _Progress(rows_to_score, f"{day} with {champion.name} v{champion.version}")
    done = 0
    with lake.cursor(con) as cursor:
        # A prepared statement's result streams; a relation from `sql(params=...)` is first
        # materialised whole by DuckDB 1.5 (all the day's rows in memory before the first chunk).
        features = cursor.execute(_features_query(con), {"day": day}).to_arrow_reader(chunk_rows)
        for chunk in warehouse.tables_of(features, chunk_rows):
            scores = _positive_scores(model, _model_input(chunk), champion, first_row=done)
            rows = _score_rows(chunk, scores, threshold, champion, run_id, scored_at)
            done += rows.num_rows
            progress.update(done)
            yield rows


def _model_input(chunk: pa.Table) -> pd.DataFrame:
    """A chunk as the DataFrame the model pipeline takes (dates as datetime64, like `.df()`)."""
    return chunk.to_pandas(date_as_object=False)


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


def _copy_to_warehouse(
    con: duckdb.DuckDBPyConnection,
    files: _DayFiles,
    location: DeltaLocation,
    version: int,
    champion: ChampionLike,
    rows_to_score: int,
) -> None:
    """Replace D in `scores.transaction_scores` with the rows just committed and record the day
    in `meta.days`, in one transaction: analysts get exactly the published rows.

    DuckDB reads the committed Parquet files from the local staging copies (the same bytes
    that were uploaded) with one INSERT, so it writes full row groups to disk as they come;
    appending Arrow data instead would hold the whole day in memory until the commit.
    """
    day = files.day
    names = [name for name in SCORE_SCHEMA.names if name != "dt"]

    def copy(writer: duckdb.DuckDBPyConnection) -> None:
        writer.execute("DELETE FROM scores.transaction_scores WHERE dt = ?", [day])
        if files.local:
            writer.execute(
                f"INSERT INTO scores.transaction_scores (dt, {', '.join(names)}) "
                f"SELECT $day::DATE, {', '.join(names)} FROM read_parquet($files)",
                {"day": day, "files": [str(path) for path in files.local]},
            )
        copied = writer.execute(
            "SELECT count(*) FROM scores.transaction_scores WHERE dt = ?", [day]
        ).fetchall()[0][0]
        if copied != files.rows:
            raise ScoreCountMismatch(f"copied {copied} rows, expected {files.rows}")
        update_day(
            writer,
            day,
            no_model_yet=False,
            rows_to_score=rows_to_score,
            rows_scored=files.rows,
            model_name=champion.name,
            model_version=str(champion.version),
        )

    with lake.cursor(con) as writer:
        try:
            lake.run_unit(writer, f"copy of {day}'s scores into the warehouse", copy)
        except Exception as exc:
            raise RuntimeError(
                f"{day} is published as version {version} of {location.uri}, but copying it into "
                f"scores.transaction_scores failed: {exc}. Readers of the Delta table already see "
                f"the new scores; re-run scoring for {day} to bring the warehouse copy and "
                "meta.days in line (it replaces both)."
            ) from exc


class _FileStats:
    """Per-file Delta statistics: row count, null counts, exact min/max for data skipping."""

    def __init__(self) -> None:
        self.rows = 0
        self.nulls: dict[str, int] = {}
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}

    def add(self, data: pa.Table) -> None:
        self.rows += data.num_rows
        for field in data.schema:
            column = data.column(field.name)
            self.nulls[field.name] = self.nulls.get(field.name, 0) + column.null_count
            if field.type not in _MIN_MAX_TYPES or column.null_count == len(column):
                continue
            bounds = pc.min_max(column)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            self.low[field.name] = min(low, self.low.get(field.name, low))
            self.high[field.name] = max(high, self.high.get(field.name, high))

    def to_json(self) -> str:
        def value(v: Any) -> Any:
            return v.isoformat() if isinstance(v, date) else v

        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {k: value(v) for k, v in self.low.items()},
                "maxValues": {k: value(v) for k, v in self.high.items()},
                "nullCount": self.nulls,
            }
        )


class _DayFiles:
    """The day's score rows as new Parquet data files of the Delta table, not yet committed.

    delta-rs' own writer keeps every row of a write in memory until it commits; these files
    are written chunk by chunk instead, so memory stays at one chunk. Each rolls over every
    `_FILE_ROWS` rows in the local staging folder and is uploaded under
    `scores/transaction_scores/dt=D/` through the object store; the staging copy stays for the
    warehouse copy. The partition value lives in the path, as Delta wants. Until a commit names
    them, readers never see these files; `discard` removes them after a failure.
    """

    def __init__(self, store: ObjectStore, day: date, staging: Path) -> None:
        self.store, self.day, self.staging = store, day, staging
        self.rows = 0
        self.actions: list[AddAction] = []
        self.uploaded: list[str] = []
        self.local: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._stats = _FileStats()

    def write(self, rows: pa.Table) -> None:
        data = rows.drop_columns(["dt"])
        if self._writer is None:
            self.local.append(self.staging / f"part-{uuid.uuid4().hex}.parquet")
            self._writer = pq.ParquetWriter(self.local[-1], data.schema)
            self._stats = _FileStats()
        self._writer.write_table(data)
        self._stats.add(data)
        self.rows += data.num_rows
        if self._stats.rows >= _FILE_ROWS:
            self._upload()

    def close(self) -> list[AddAction]:
        if self._writer is not None:
            self._upload()
        return self.actions

    def discard(self) -> None:
        """Remove the files uploaded so far (none of them was committed)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for key in self.uploaded:
            try:
                self.store.delete(key)
            except Exception as exc:  # noqa: BLE001 - leftovers are invisible; vacuum removes them
                log.warning("could not remove uncommitted score file %s: %s", key, exc)
        self.uploaded.clear()

    def _upload(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        path = self.local[-1]
        relative = f"dt={self.day.isoformat()}/{path.name}"
        key = f"{SCORE_TABLE_KEY}/{relative}"
        self.store.put_file(key, path)
        self.uploaded.append(key)
        self.actions.append(
            AddAction(
                path=relative,
                size=path.stat().st_size,
                partition_values={"dt": self.day.isoformat()},
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=self._stats.to_json(),
            )
        )


def _commit(
    location: DeltaLocation,
    files: _DayFiles,
    actions: list[AddAction],
    *,
    champion: ChampionLike,
    run_id: str,
) -> int:
    """One Delta commit that replaces day D's files with the new ones; returns its version.

    The first day creates the table (schema, `dt` partitioning, name, description). Commits are
    put-if-absent, so a concurrent writer makes this one fail cleanly instead of mixing days.
    """
    day = files.day.isoformat()
    properties = CommitProperties(
        custom_metadata={
            "dt": day,
            "scoring_run_id": run_id,
            "model_name": champion.name,
            "model_version": str(champion.version),
            "rows": str(files.rows),
        }
    )
    try:
        try:
            table = DeltaTable(location.uri, storage_options=location.storage_options)
        except TableNotFoundError:
            create_table_with_add_actions(
                location.uri,
                Schema.from_arrow(SCORE_SCHEMA),
                actions,
                mode="error",
                partition_by=["dt"],
                name="transaction_scores",
                description="Fraud score per transaction, one partition per day (dt), replaced "
                "atomically when a day is re-scored.",
                storage_options=location.storage_options,
                commit_properties=properties,
            )
        else:
            table.create_write_transaction(
                actions,
                mode="overwrite",
                schema=SCORE_SCHEMA,
                partition_by=["dt"],
                partition_filters=[("dt", "=", day)],
                commit_properties=properties,
            )
    except CommitFailedError as exc:
        files.discard()
        raise RuntimeError(
            f"another writer committed to {location.uri} while {day} was being published "
            f"({exc}); nothing of this run is visible. Re-run scoring for {day}."
        ) from exc
    return _committed_version(location, files)


def _committed_version(location: DeltaLocation, files: _DayFiles) -> int:
    """The table version that holds exactly this run's files and rows for the day."""
    table = DeltaTable(location.uri, storage_options=location.storage_options)
    day = files.day.isoformat()
    expected = {a.path for a in files.actions}
    current = {
        "dt=" + uri.rsplit("/dt=", 1)[-1]
        for uri in table.file_uris(partition_filters=[("dt", "=", day)])
    }
    published = table.to_pyarrow_dataset(partitions=[("dt", "=", day)]).count_rows()
    if current != expected or published != files.rows:
        raise ScoreCountMismatch(
            f"version {table.version()} of {location.uri} holds {published} rows in "
            f"{len(current)} files for {day}, expected this run's {files.rows} rows in "
            f"{len(expected)} files (another writer replaced the day meanwhile?). Re-run "
            f"scoring for {day}: it replaces the day."
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
