"""Ingest one dataset-day from the landing zone as a new revision written aside.

Two steps so that only DuckDB work holds the warehouse: `prepare_revision` reads, parses and
checks the day's files and writes the accepted rows as Parquet to `raw/{dataset}/dt=/rev=/`;
`load_revision` copies that Parquet into `raw.<dataset>` and registers the revision as
`ingested`. Nothing here makes a revision current: that is `batches.promote`, after the raw check.

Rules (README "Bad input"): problems with the day as a whole (files not matching `_SUCCESS`,
unreadable or non-UTF-8 files, missing or extra columns, row counts that differ from the
declaration) quarantine the whole revision; problems with single rows (unparsable values,
timestamps outside the day, bad codes, absurd amounts, duplicate ids) reject only those rows,
which are kept with their reason in `meta.rejected_rows`. What a chargeback refers to is not
judged here: its transaction may not be current yet, so every readable row is loaded and
`pending_rows` settles it once the transaction is known. A revision whose rows were readable (only
the row count differs from `_SUCCESS`) is loaded but quarantined, so an operator can release it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlpipeline.core import landing
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ingest import batches
from mlpipeline.ingest.batches import PreparedRevision
from mlpipeline.ingest.validation_rules import RowRejects, arrow_schema, check_rows
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import utcnow
from mlpipeline.warehouse.raw_tables import DATASET_COLUMNS, ensure_raw, table_columns

log = logging.getLogger(__name__)


class RevisionRejected(ValueError):
    """The whole revision breaks the landing contract; it must not become current."""

    def __init__(self, batch_id: str, file: str, rule: str, detail: str) -> None:
        self.batch_id, self.file, self.rule, self.detail = batch_id, file, rule, detail
        super().__init__(f"batch {batch_id}, file {file}: rule '{rule}' broken: {detail}")


def batch_id_for(dataset: str, day: date) -> str:
    """Same dataset and day ⇒ same id, whatever the content."""
    return f"{dataset}-{day.isoformat()}"


def _read_file(batch_id: str, name: str, data: bytes, columns: list[str]) -> pa.Table:
    if not data:
        raise RevisionRejected(batch_id, name, "non-empty file", "the file has 0 bytes")
    if name.endswith(".parquet"):
        try:
            table = pq.read_table(io.BytesIO(data))
        except pa.ArrowException as exc:
            raise RevisionRejected(batch_id, name, "readable parquet", str(exc)) from exc
        table = _parquet_as_text(batch_id, name, table)
    else:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise RevisionRejected(
                batch_id,
                name,
                "UTF-8 text",
                f"byte {data[exc.start : exc.start + 1]!r} at offset {exc.start} (line {line})",
            ) from exc
        names = next(csv.reader([data.partition(b"\n")[0].decode().strip()]), [])
        try:
            table = pacsv.read_csv(
                io.BytesIO(data),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}, strings_can_be_null=False
                ),
            )
        except pa.ArrowInvalid as exc:
            raise RevisionRejected(batch_id, name, "well-formed CSV", str(exc)) from exc
    missing = [c for c in columns if c not in table.column_names]
    extra = [c for c in table.column_names if c not in columns]
    if missing or extra:
        raise RevisionRejected(
            batch_id,
            name,
            "exact columns",
            f"missing {missing}, unexpected {extra}; expected {columns}",
        )
    return table.select(columns)


# Parquet carries types; the row rules read text, as from CSV. A column of another type than
# these would change meaning when turned into text (a float amount loses its cents, a timestamp
# without a zone is not UTC), so it rejects the revision instead.
_TIMESTAMP_COLUMNS = {"event_ts", "reported_at"}


def _parquet_type_ok(column: str, kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if column == "amount":
        return pa.types.is_decimal(kind) and kind.scale <= 2
    if column in _TIMESTAMP_COLUMNS:
        return pa.types.is_timestamp(kind) and kind.tz in {"UTC", "+00:00", "Etc/UTC"}
    return False


def _parquet_as_text(batch_id: str, name: str, table: pa.Table) -> pa.Table:
    wrong = [f"{f.name}: {f.type}" for f in table.schema if not _parquet_type_ok(f.name, f.type)]
    if wrong:
        raise RevisionRejected(
            batch_id,
            name,
            "parquet column types",
            f"{', '.join(wrong)}; expected text, amount as decimal with at most 2 decimals, "
            "timestamps as text or timestamp with time zone UTC",
        )
    columns = []
    for column, kind in zip(table.column_names, table.schema.types, strict=True):
        values = table.column(column)
        if pa.types.is_timestamp(kind):
            values = pc.strftime(values, "%Y-%m-%dT%H:%M:%SZ")
        columns.append(values.cast(pa.string()))
    return pa.table(columns, names=table.column_names)


def _checksum(parts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, file_sha in sorted(parts):
        digest.update(f"{name}:{file_sha}\n".encode())
    return digest.hexdigest()


def prepare_revision(store: ObjectStore, dataset: str, day: date) -> PreparedRevision:
    """Read, parse and check a landed day; write accepted rows aside as a new revision."""
    if dataset not in DATASET_COLUMNS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {landing.DATASETS}")
    batch_id = batch_id_for(dataset, day)
    declared = landing.read_success(store, dataset, day)
    present = landing.list_data_files(store, dataset, day)
    declared_names = [f.name for f in declared]
    prefix = landing.day_prefix(dataset, day)

    blobs: dict[str, bytes] = {name: store.get_bytes(prefix + name) for name in present}
    sources = [
        {"key": prefix + name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        for name, blob in blobs.items()
    ]
    checksum = _checksum([(s["key"], s["sha256"]) for s in sources] + [("_SUCCESS", "")])
    revision = checksum[:12]
    result = PreparedRevision(
        dataset=dataset,
        day=day.isoformat(),
        batch_id=batch_id,
        revision=revision,
        content_checksum=checksum,
        source_objects=sources,
        rows_declared=sum(f.rows for f in declared),
        rows_read=0,
        rows_written=0,
        rows_rejected=0,
        object_key=None,
        rejects_key=None,
    )
    try:
        _check_files_match(batch_id, prefix, declared_names, present)
        table, rejects, miscount = parse_and_check(
            batch_id, revision, dataset, day, declared, blobs
        )
    except RevisionRejected as exc:
        log.error("%s", exc)
        result.error = {"file": exc.file, "rule": exc.rule, "detail": exc.detail}
        return result

    if miscount is not None:
        # The rows are readable but not what the producer declared: they are kept aside (and
        # loaded, never current) so an operator who trusts them can release the revision.
        log.error("%s", miscount)
        result.error = {"file": miscount.file, "rule": miscount.rule, "detail": miscount.detail}
    write_aside(store, result, table, rejects)
    return result


def write_aside(
    store: ObjectStore, result: PreparedRevision, table: pa.Table, rejects: RowRejects
) -> None:
    """Write a revision's accepted rows (and its row rejects) to `raw/{dataset}/dt=/rev=/`,
    where `load_revision` reads them; fills the counts and keys of `result`."""
    result.rows_read = result.rows_read or table.num_rows + rejects.count
    result.rows_rejected += rejects.count
    result.rows_written = table.num_rows
    rev_prefix = f"raw/{result.dataset}/dt={result.day}/rev={result.revision}/"
    result.object_key = rev_prefix + "part-00000.parquet"
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    store.put_bytes(result.object_key, buffer.getvalue())
    if rejects.count:
        result.rejects_key = rev_prefix + "rejected_rows.json"
        store.put_bytes(result.rejects_key, json.dumps(rejects.rows).encode())
        log.warning(
            "batch %s revision %s: %d of %d rows rejected; first: %s",
            result.batch_id,
            result.revision,
            rejects.count,
            result.rows_read,
            rejects.rows[:5],
        )
    log.info(
        "batch %s revision %s: %d rows written aside to %s",
        result.batch_id,
        result.revision,
        table.num_rows,
        result.object_key,
    )


def _check_files_match(batch_id: str, prefix: str, declared: list[str], present: list[str]) -> None:
    missing = sorted(set(declared) - set(present))
    undeclared = sorted(set(present) - set(declared))
    if missing or undeclared:
        raise RevisionRejected(
            batch_id,
            prefix + "_SUCCESS",
            "files match _SUCCESS",
            f"declared but absent {missing}, present but undeclared {undeclared}",
        )
    bad = [n for n in present if not n.endswith(landing.DATA_SUFFIXES)]
    if bad:
        raise RevisionRejected(
            batch_id, prefix + bad[0], "file format", "expected .csv or .parquet"
        )


def parse_and_check(
    batch_id: str,
    revision: str,
    dataset: str,
    day: date,
    declared: list[landing.DeclaredFile],
    blobs: dict[str, bytes],
) -> tuple[pa.Table, RowRejects, RevisionRejected | None]:
    """Typed accepted rows, row rejects, and the first file whose row count differs from
    `_SUCCESS` (every file is still parsed, so such a revision can be released)."""
    contract = list(DATASET_COLUMNS[dataset])
    accepted: list[pa.Table] = []
    rejects = RowRejects()
    seen_ids: list[pa.Array] = []
    miscount: RevisionRejected | None = None
    for declared_file in declared:
        name = declared_file.name
        strings = _read_file(batch_id, name, blobs[name], contract)
        if strings.num_rows != declared_file.rows and miscount is None:
            miscount = RevisionRejected(
                batch_id,
                name,
                "row count matches _SUCCESS",
                f"_SUCCESS declares {declared_file.rows} rows, the file has {strings.num_rows}",
            )
        typed, file_rejects = check_rows(dataset, day, name, strings, seen_ids)
        rejects.extend(file_rejects)
        n = typed.num_rows
        lineage = {
            "dt": pa.array([day] * n, pa.date32()),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "revision": pa.array([revision] * n, pa.string()),
            "source_file": pa.array([name] * n, pa.string()),
        }
        for col, values in lineage.items():
            typed = typed.append_column(col, values)
        accepted.append(typed.select(list(table_columns(dataset))))
    if not accepted:
        return _empty_table(dataset), rejects, miscount
    return pa.concat_tables(accepted), rejects, miscount


def _empty_table(dataset: str) -> pa.Table:
    return arrow_schema(dataset).empty_table()


def load_revision(
    con: duckdb.DuckDBPyConnection, store: ObjectStore, prepared: PreparedRevision, run_id: str
) -> str:
    """Copy a prepared revision into `raw.<dataset>` and register it; the same content twice
    is recognised by its checksum and changes nothing. Returns the revision's status."""
    ensure_raw(con)
    what = f"load of batch {prepared.batch_id} revision {prepared.revision}"
    return lake.run_unit(con, what, lambda c: _load_once(c, store, prepared, run_id))


def _load_once(
    con: duckdb.DuckDBPyConnection, store: ObjectStore, prepared: PreparedRevision, run_id: str
) -> str:
    """One attempt: claim the batch registry, so a concurrent load of the same revision either
    commits first (and this one, run again, finds it) or waits for this one to commit."""
    batches.claim(con)
    existing = batches.get(con, prepared.batch_id, prepared.revision)
    if existing is not None:
        log.info(
            "batch %s revision %s already registered (status %s); same content, nothing to do",
            prepared.batch_id,
            prepared.revision,
            existing["status"],
        )
        return existing["status"]
    if prepared.object_key:
        _insert_rows(con, store, prepared)
    if prepared.rejects_key:
        _insert_rejects(con, store, prepared)
    status = "quarantined" if prepared.error else "ingested"
    batches.register(con, prepared, status=status, run_id=run_id)
    return status


def _insert_rows(con: duckdb.DuckDBPyConnection, store: ObjectStore, p: PreparedRevision) -> None:
    """DuckDB reads the revision's Parquet itself (in parallel, no Arrow copy through Python)
    from a local copy the object store brought down."""
    with tempfile.TemporaryDirectory(prefix="raw-revision-") as tmp:
        local = str(store.download(p.object_key, Path(tmp) / "revision.parquet"))
        literal = "'" + local.replace("'", "''") + "'"
        columns = ", ".join(table_columns(p.dataset))
        con.execute(
            f"INSERT INTO raw.{p.dataset} ({columns}) SELECT {columns} FROM read_parquet({literal})"
        )


def _insert_rejects(
    con: duckdb.DuckDBPyConnection, store: ObjectStore, p: PreparedRevision
) -> None:
    rows = json.loads(store.get_bytes(p.rejects_key))
    now = utcnow()
    con.executemany(
        "INSERT INTO meta.rejected_rows VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(p.batch_id, p.revision, r["file"], r["row"], r["rule"], r["detail"], now) for r in rows],
    )
