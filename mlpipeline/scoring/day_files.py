"""A day of scores as new data files of the Delta table, published by one commit.

delta-rs' own writer keeps every row of a write in memory until it commits; these files are
written chunk by chunk instead, so memory stays at one chunk, and one commit then replaces the
day's files (readers see the old day or the new, never a mix).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.scoring.model_scores import ChampionLike
from mlpipeline.scoring.score_table import (
    SCORE_SCHEMA,
    SCORE_TABLE_KEY,
    DeltaLocation,
    ScoreCountMismatch,
)
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import update_day

log = logging.getLogger(__name__)

# Rows per Parquet data file of a day (about 40 MB): big enough for readers, small enough to
# stage on local disk before the upload.
FILE_ROWS = 1_000_000


_MIN_MAX_TYPES = (pa.string(), pa.float64(), pa.date32())


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


class DayFiles:
    """The day's score rows as new Parquet data files of the Delta table, not yet committed.

    delta-rs' own writer keeps every row of a write in memory until it commits; these files
    are written chunk by chunk instead, so memory stays at one chunk. Each rolls over every
    `FILE_ROWS` rows in the local staging folder and is uploaded under
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
        if self._stats.rows >= FILE_ROWS:
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


def commit_day(
    location: DeltaLocation,
    files: DayFiles,
    actions: list[AddAction],
    *,
    metadata: dict[str, str],
) -> int:
    """One Delta commit that replaces day D's files with the new ones; returns its version.

    The first day creates the table (schema, `dt` partitioning, name, description). Commits are
    put-if-absent, so a concurrent writer makes this one fail cleanly instead of mixing days.
    """
    day = files.day.isoformat()
    properties = CommitProperties(
        custom_metadata={
            "dt": day,
            **metadata,
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


def _committed_version(location: DeltaLocation, files: DayFiles) -> int:
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


def copy_to_warehouse(
    con: duckdb.DuckDBPyConnection,
    files: DayFiles,
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
