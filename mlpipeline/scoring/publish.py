"""Publishing a scored day: one Delta commit replaces the day's partition of the score table,
then the committed rows are copied into the warehouse.

`write_deltalake` takes the scored chunks as a RecordBatchReader and writes them out as they
come (deltalake 1.x no longer holds a write's rows until the commit: `bench_scoring` measures
score_day's memory against the plain script's), then commits once, `mode="overwrite"` with a
predicate on the day: readers see the old day or the new, never a mix, and other days stay as
they are. A failure before that commit (a chunk that fails, a count that differs) leaves no
trace readers can see.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from mlpipeline.core.config import Settings
from mlpipeline.scoring.model_scores import FEATURES_TABLE, ChampionLike
from mlpipeline.scoring.score_table import SCORE_SCHEMA, DeltaLocation, ScoreCountMismatch
from mlpipeline.warehouse import duckdb_extensions, lake
from mlpipeline.warehouse.meta import update_day


class _DayRows:
    """The scored chunks as one stream for delta-rs, checked to hold exactly the day's rows
    before the stream ends (so before delta-rs commits).

    delta-rs reports an error raised inside the stream only as text; the error is kept here so
    the caller can raise it as it was.
    """

    def __init__(self, chunks: Iterator[pa.Table], day: date, rows_to_score: int) -> None:
        self.chunks, self.day, self.rows_to_score = chunks, day, rows_to_score
        self.rows = 0
        self.failure: BaseException | None = None

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(SCORE_SCHEMA, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for chunk in self.chunks:
                self.rows += chunk.num_rows
                yield from chunk.to_batches()
            if self.rows != self.rows_to_score:
                raise ScoreCountMismatch(
                    f"scored {self.rows} rows for {self.day} but {FEATURES_TABLE} had "
                    f"{self.rows_to_score}; nothing was published. Re-run scoring for the day; "
                    "if it repeats, the features changed while scoring ran (is another task "
                    "writing the warehouse outside the pool?)."
                )
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.failure = exc
            raise


def publish_day(
    location: DeltaLocation,
    chunks: Iterator[pa.Table],
    *,
    day: date,
    rows_to_score: int,
    metadata: dict[str, str],
) -> int:
    """Write the day's scored chunks and commit them in place of the day's rows; returns the
    committed table version, which holds exactly `rows_to_score` rows for the day.

    The first day creates the table (schema, `dt` partitioning, name, description) as version 0.
    Commits are put-if-absent; delta-rs retries one that lost a race with a commit to another
    day itself, and fails one that raced a commit to the same day (the stream is spent by then,
    so only a re-run can score the day again).
    """
    rows = _DayRows(chunks, day, rows_to_score)
    try:
        table: DeltaTable | None = DeltaTable(
            location.uri, storage_options=location.storage_options
        )
    except TableNotFoundError:
        table = None
    try:
        write_deltalake(
            location.uri if table is None else table,
            rows.reader(),
            mode="error" if table is None else "overwrite",
            predicate=None if table is None else f"dt = '{day.isoformat()}'",
            partition_by=["dt"],
            name="transaction_scores",
            description="Fraud score per transaction, one partition per day (dt), replaced "
            "atomically when a day is re-scored.",
            storage_options=location.storage_options,
            commit_properties=CommitProperties(
                custom_metadata={"dt": day.isoformat(), **metadata, "rows": str(rows_to_score)}
            ),
        )
    except CommitFailedError as exc:
        raise RuntimeError(
            f"another writer committed {day} to {location.uri} while this run was publishing "
            f"it ({exc}); nothing of this run is visible. Re-run scoring for {day}."
        ) from exc
    except Exception:
        if rows.failure is not None:
            raise rows.failure from None
        raise
    return 0 if table is None else table.version()


def copy_to_warehouse(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    location: DeltaLocation,
    version: int,
    *,
    day: date,
    champion: ChampionLike,
    rows: int,
) -> None:
    """Replace D in `scores.transaction_scores` with the day's rows of table `version` and
    record the day in `meta.days`, in one transaction: analysts get exactly the published rows.

    DuckDB reads the day's data files of that version (not the newest, nor what scoring
    produced) with one INSERT, writing full row groups as they come; nothing is staged on local
    disk. The table has no deletion vectors or column mapping (reader protocol 1), so a
    version's files hold exactly its rows. An Arrow stream from delta-rs instead measured 200 to
    300 MB more for a 1M-row day (bench_scoring), which breaks scoring's memory target.
    """
    names = [name for name in SCORE_SCHEMA.names if name != "dt"]
    table = DeltaTable(location.uri, version=version, storage_options=location.storage_options)
    files = table.file_uris(file_pruning_predicate=[("dt", "=", day.isoformat())])

    def copy(writer: duckdb.DuckDBPyConnection) -> None:
        writer.execute("DELETE FROM scores.transaction_scores WHERE dt = ?", [day])
        if files:
            writer.execute(
                f"INSERT INTO scores.transaction_scores (dt, {', '.join(names)}) "
                f"SELECT $day::DATE, {', '.join(names)} FROM read_parquet($files)",
                {"day": day, "files": files},
            )
        copied = writer.execute(
            "SELECT count(*) FROM scores.transaction_scores WHERE dt = ?", [day]
        ).fetchall()[0][0]
        if copied != rows:
            raise ScoreCountMismatch(f"copied {copied} rows, expected {rows}")
        update_day(
            writer,
            day,
            no_model_yet=False,
            rows_to_score=rows,
            rows_scored=rows,
            model_name=champion.name,
            model_version=str(champion.version),
        )

    with lake.cursor(con) as writer:
        if location.uri.startswith("s3://"):
            _s3_secret(writer, settings, location)
        try:
            lake.run_unit(writer, f"copy of {day}'s scores into the warehouse", copy)
        except Exception as exc:
            raise RuntimeError(
                f"{day} is published as version {version} of {location.uri}, but copying it into "
                f"scores.transaction_scores failed: {exc}. Readers of the Delta table already see "
                f"the new scores; re-run scoring for {day} to bring the warehouse copy and "
                "meta.days in line (it replaces both)."
            ) from exc


def _s3_secret(con: duckdb.DuckDBPyConnection, settings: Settings, location: DeltaLocation) -> None:
    """Let DuckDB read the score table's S3 files with the pipeline's S3 settings, scoped to the
    table (the warehouse itself may live elsewhere)."""
    duckdb_extensions.load(con, "httpfs")
    s3 = lake.s3_settings(settings)
    options = {
        "KEY_ID": s3["s3_access_key_id"],
        "SECRET": s3["s3_secret_access_key"],
        "REGION": s3["s3_region"],
        "ENDPOINT": s3["s3_endpoint"],
        "URL_STYLE": s3["s3_url_style"],
        "USE_SSL": s3["s3_use_ssl"],
        "SCOPE": location.uri,
    }
    listed = ", ".join(f"{key} {lake.sql_string(value)}" for key, value in options.items())
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET score_table (TYPE s3, {listed})")
