"""Batch scoring of one processing day into the score table (`score_table`).

A day is replaced by one atomic commit (`publish`): readers see the old rows or the new,
never a mix; the same rows are then copied into the warehouse for analysts.

Scoring reads `features.transaction_features`, the dbt model training reads too, so the model
sees exactly the features it was trained on: there is no second copy of that join here.

Memory does not grow with the day: the feature rows stream out of DuckDB in chunks
(`scoring.chunk_rows`), each chunk is scored and streamed into `write_deltalake`, whose one
commit then puts the day's new files in place of its old ones; DuckDB works under
`scoring.duckdb_memory_limit`, spilling to disk beyond it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import pyarrow as pa

from mlpipeline import warehouse
from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.days import parse_day
from mlpipeline.core.progress import Progress
from mlpipeline.scoring.model_scores import (
    FEATURES_TABLE,
    ChampionLike,
    ModelLoader,
    ProbabilisticModel,
    model_input,
    positive_scores,
    score_rows,
)
from mlpipeline.scoring.publish import copy_to_warehouse, publish_day
from mlpipeline.scoring.score_table import (
    SCORE_SCHEMA,
    DeltaLocation,
    ScoreCountMismatch,
    check_table_schema,
    ensure_score_tables,
    score_table_location,
)
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import ensure_meta, update_day, utcnow

log = logging.getLogger(__name__)

_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)$", re.IGNORECASE)


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
    the model into the Delta writer; its one commit then swaps the day's files,
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
        check_table_schema(location)
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
        version = publish_day(
            location,
            chunks,
            day=day,
            rows_to_score=rows_to_score,
            metadata={
                "scoring_run_id": run_id,
                "model_name": champion.name,
                "model_version": str(champion.version),
            },
        )
        copy_to_warehouse(
            con, settings, location, version, day=day, champion=champion, rows=rows_to_score
        )
    log.info(
        "published %d scores for %s as version %d of %s", rows_to_score, day, version, location.uri
    )
    return ScoreResult(
        day=day,
        no_model_yet=False,
        rows_to_score=rows_to_score,
        rows_scored=rows_to_score,
        model_name=champion.name,
        model_version=str(champion.version),
        scoring_run_id=run_id,
        table_uri=location.uri,
        table_version=version,
    )


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
    progress = Progress(
        f"scored {day} with {champion.name} v{champion.version}:", rows_to_score, log, every=0
    )
    done = 0
    with lake.cursor(con) as cursor:
        # A prepared statement's result streams; a relation from `sql(params=...)` is first
        # materialised whole by DuckDB 1.5 (all the day's rows in memory before the first chunk).
        features = cursor.execute(_features_query(con), {"day": day}).to_arrow_reader(chunk_rows)
        for chunk in warehouse.tables_of(features, chunk_rows):
            scores = positive_scores(model, model_input(chunk), champion, first_row=done)
            rows = score_rows(chunk, scores, threshold, champion, run_id, scored_at)
            done += rows.num_rows
            progress.add(rows.num_rows)
            yield rows
