"""Export one cutoff of `features.customer_snapshot` to an immutable folder in the object store.

The export is the only thing the Redis push, its verification and the online reader trust;
the wire format of its vectors is `wire_format`'s.

The manifest's parity sample holds some rows' values as JSON (the same values, decoded).

An export goes to `features/customer_snapshot/cutoff=YYYY-MM-DD/export=<export_id>/`, a folder
never written before; `manifest.json` is written last, so a folder without it is unfinished and
ignored by `latest_export`.
"""

from __future__ import annotations

import heapq
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgpack
import pyarrow.parquet as pq

from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore
from mlpipeline.core.progress import Progress
from mlpipeline.features.wire_format import (
    CHECKSUM_ALGORITHM,
    ENCODING,
    FORMAT_VERSION,
    KIND_TYPES,
    Checksum,
    Column,
    ExportError,
    OnlineSpecLike,
    SnapshotCodec,
    columns_from_spec,
    row_digests,
)
from mlpipeline.warehouse import tables_of

log = logging.getLogger(__name__)

FEATURE_VIEW = "customer_snapshot"
SOURCE_TABLE = "features.customer_snapshot"
EXPORT_ROOT = "features/customer_snapshot"
MANIFEST_NAME = "manifest.json"
# An export id starts with its creation time in this form (UTC), then a checksum prefix.
EXPORT_ID_TIME = "%Y%m%dT%H%M%S%fZ"


class ExportNotFound(LookupError):
    """No complete export (folder with manifest.json) where one was expected."""


@dataclass(frozen=True)
class ExportResult:
    cutoff: date
    export_id: str
    prefix: str
    row_count: int
    checksum: str
    manifest: dict[str, Any]


def export_time(export_id: str) -> datetime:
    """When an export was created (UTC), read from its id: also for unfinished folders."""
    try:
        return datetime.strptime(export_id.split("-", 1)[0], EXPORT_ID_TIME).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ExportError(
            f"{export_id!r} is not an export id (<{EXPORT_ID_TIME}>-<checksum prefix>)"
        ) from exc


def cutoff_prefix(day: date) -> str:
    return f"{EXPORT_ROOT}/cutoff={day.isoformat()}/"


def export_prefix(day: date, export_id: str) -> str:
    return f"{cutoff_prefix(day)}export={export_id}/"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_source(
    con: duckdb.DuckDBPyConnection, cutoff: date, entity_key: str, columns: Sequence[Column]
) -> int:
    """Row count of the cutoff, after checking the columns and the entity keys."""
    found = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'features' AND table_name = 'customer_snapshot'"
        ).fetchall()
    }
    if not found:
        raise ExportError(f"{SOURCE_TABLE} does not exist; build it first (transform.build)")
    missing = [n for n in [entity_key, *(c.name for c in columns)] if n not in found]
    if missing:
        raise ExportError(
            f"{SOURCE_TABLE} lacks the online columns {missing} declared in meta.online; "
            "rebuild the model or fix the declaration"
        )
    key = _ident(entity_key)
    total, null_keys, newline_keys = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {key} IS NULL), "
        f"count(*) FILTER (WHERE contains(CAST({key} AS VARCHAR), chr(10))) "
        f"FROM {SOURCE_TABLE} WHERE cutoff_date = ?",
        [cutoff],
    ).fetchone()
    if total == 0:
        raise ExportError(
            f"{SOURCE_TABLE} has no rows for cutoff {cutoff}; build that day's snapshot first "
            "(an empty export would empty the online store)"
        )
    if null_keys or newline_keys:
        raise ExportError(
            f"{SOURCE_TABLE} has {null_keys} rows with NULL {entity_key} and {newline_keys} "
            f"with a newline in it for cutoff {cutoff}; such entities cannot be served"
        )
    duplicates = con.execute(
        f"SELECT {key}, count(*) FROM {SOURCE_TABLE} WHERE cutoff_date = ? "
        f"GROUP BY {key} HAVING count(*) > 1 ORDER BY {key} LIMIT 5",
        [cutoff],
    ).fetchall()
    if duplicates:
        raise ExportError(
            f"{SOURCE_TABLE} has several rows per {entity_key} for cutoff {cutoff}, e.g. "
            f"{duplicates}; the model's unique key (customer_id, cutoff_date) is broken"
        )
    return total


class _Sample:
    """The rows with the smallest digests: a parity sample that depends only on the content."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[int, str, bytes]] = []

    def offer(self, digests: Sequence[int], entities: Sequence[str], packed: Sequence[bytes]):
        heap = self._heap
        for item in zip(digests, entities, packed, strict=True):
            if len(heap) < self.size:
                heapq.heappush(heap, (-item[0], item[1], item[2]))
            elif item[0] < -heap[0][0]:
                heapq.heapreplace(heap, (-item[0], item[1], item[2]))

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"entity": entity, "values": msgpack.unpackb(packed)}
            for _, entity, packed in sorted(self._heap, key=lambda item: item[1])
        ]


def _write_parquet(
    con: duckdb.DuckDBPyConnection,
    codec: SnapshotCodec,
    cutoff: date,
    folder: Path,
    total: int,
    row_group_size: int,
    rows_per_file: int,
    sample: _Sample,
) -> tuple[list[dict[str, Any]], Checksum]:
    selects = [f"CAST({_ident(codec.entity_key)} AS VARCHAR) AS {_ident(codec.entity_key)}"]
    selects += [
        f"CAST({_ident(c.name)} AS {KIND_TYPES[c.kind][0]}) AS {_ident(c.name)}"
        for c in codec.columns
    ]
    query = (
        f"SELECT {', '.join(selects)} FROM {SOURCE_TABLE} WHERE cutoff_date = ? "
        f"ORDER BY {_ident(codec.entity_key)}"
    )
    # A prepared statement's result streams (a `sql(params=...)` relation is materialised whole).
    reader = con.execute(query, [cutoff]).to_arrow_reader(row_group_size)
    checksum = Checksum()
    progress = Progress(f"export of cutoff {cutoff}:", total, log)
    files: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    for table in tables_of(reader, row_group_size):
        if writer is None or files[-1]["rows"] >= rows_per_file:
            if writer is not None:
                writer.close()
            name = f"part-{len(files):05d}.parquet"
            writer = pq.ParquetWriter(folder / name, codec.schema, compression="zstd")
            files.append({"name": name, "rows": 0})
        table = table.cast(codec.schema)
        writer.write_table(table, row_group_size=row_group_size)
        entities, packed = codec.pack(table)
        digests = row_digests(entities, packed)
        checksum.add(digests)
        sample.offer(digests, entities, packed)
        files[-1]["rows"] += table.num_rows
        progress.add(table.num_rows)
    if writer is not None:
        writer.close()
    progress.finish()
    for entry in files:
        entry["bytes"] = (folder / entry["name"]).stat().st_size
    return files, checksum


def export_snapshot(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStore,
    day: date | str,
    spec: OnlineSpecLike,
    dbt_manifest_hash: str,
    *,
    incomplete_history: bool = False,
    missing_batches: Sequence[str] = (),
    row_group_size: int = 100_000,
    rows_per_file: int = 1_000_000,
    parity_sample_size: int = 200,
) -> ExportResult:
    """Write cutoff `day` of the snapshot to a new export folder; manifest.json last."""
    cutoff = parse_day(day)
    columns = columns_from_spec(spec)
    codec = SnapshotCodec(spec.entity_key, columns)
    total = _check_source(con, cutoff, spec.entity_key, columns)
    created = datetime.now(UTC)
    sample = _Sample(parity_sample_size)
    with tempfile.TemporaryDirectory(prefix="snapshot-export-") as tmp:
        files, checksum = _write_parquet(
            con, codec, cutoff, Path(tmp), total, row_group_size, rows_per_file, sample
        )
        if checksum.rows != total:
            raise ExportError(
                f"cutoff {cutoff}: counted {total} rows but exported {checksum.rows}; the table "
                "changed during the export. Re-run it while nothing else writes the warehouse."
            )
        export_id = f"{created:{EXPORT_ID_TIME}}-{checksum.hexdigest()[:8]}"
        prefix = export_prefix(cutoff, export_id)
        if store.list(prefix):
            raise ExportError(f"export folder {store.url}/{prefix} already exists; not rewriting")
        for entry in files:
            store.put_file(prefix + entry["name"], Path(tmp) / entry["name"])
    manifest = {
        "format_version": FORMAT_VERSION,
        "feature_view": FEATURE_VIEW,
        "cutoff": cutoff.isoformat(),
        "export_id": export_id,
        "prefix": prefix,
        "entity_key": spec.entity_key,
        "columns": [{"name": c.name, "type": c.type, "kind": c.kind} for c in columns],
        "defaults": {c.name: c.default for c in columns},
        "encoding": ENCODING,
        "ttl_seconds": int(spec.ttl_days) * 86_400,
        "row_count": total,
        "checksum": checksum.hexdigest(),
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "dbt_manifest_hash": dbt_manifest_hash,
        "incomplete_history": bool(incomplete_history),
        "missing_batches": list(missing_batches),
        "files": files,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "parity_sample": sample.rows(),
    }
    store.put_bytes(prefix + MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    log.info(
        "exported cutoff %s: %d rows in %d file(s) to %s/%s",
        cutoff,
        total,
        len(files),
        store.url,
        prefix,
    )
    return ExportResult(cutoff, export_id, prefix, total, manifest["checksum"], manifest)


def read_manifest(store: ObjectStore, prefix: str) -> dict[str, Any]:
    """The manifest of the export folder `prefix` (with or without the trailing slash)."""
    key = prefix.rstrip("/") + "/" + MANIFEST_NAME
    try:
        manifest = json.loads(store.get_bytes(key))
    except ObjectNotFound as exc:
        raise ExportNotFound(
            f"{store.url}/{key} does not exist: the export is unfinished or the prefix is wrong"
        ) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{store.url}/{key} has format_version {manifest.get('format_version')!r}; this code "
            f"reads version {FORMAT_VERSION}. Re-export the cutoff with the current code."
        )
    return manifest


def latest_export(store: ObjectStore, day: date | str) -> dict[str, Any]:
    """Manifest of the newest complete export of cutoff `day`."""
    cutoff = parse_day(day)
    base = cutoff_prefix(cutoff)
    manifests = [k for k in store.list(base) if k.endswith("/" + MANIFEST_NAME)]
    if not manifests:
        raise ExportNotFound(
            f"no complete export of cutoff {cutoff} under {store.url}/{base}; "
            "run the export for that day"
        )
    return read_manifest(store, max(manifests).removesuffix(MANIFEST_NAME))
