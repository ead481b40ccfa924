"""Export one cutoff of `features.customer_snapshot` to an immutable folder in the object store.

The export is the only thing the Redis push, its verification and the online reader trust, so
the wire format of a feature vector is decided here, once:

- Parquet files hold the entity key then the online features, sorted by entity key, with Arrow
  types int64 (integer SQL types), double (DECIMAL, DOUBLE, FLOAT: the models consume floats),
  string, bool, date32 and timestamp[us] (naive UTC, like the warehouse).
- In Redis each entity's vector is one MessagePack array in manifest column order (format 2):
  integers as MessagePack integers, DECIMAL/DOUBLE as float 64 (exactly the double), strings as
  str, booleans as true/false, DATE as the str "YYYY-MM-DD", TIMESTAMP as the str
  "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC), NULL as nil. NaN and infinities are refused. MessagePack
  rather than JSON: as compact, readable in every language, and it decodes about eight times
  faster (floats are not parsed from text), which keeps a 100-entity read near a raw MGET.
- Readers decode per manifest column kind: int, float, str, bool, `date`, naive-UTC `datetime`
  (the same types the warehouse hands to pandas), None for NULL.
- The checksum is the sum modulo 2**128 of blake2b-128(entity, 0x1F, packed vector) over all
  rows. A sum does not depend on row order, so Redis can be checked in whatever order its keys
  come.
- The manifest's parity sample holds some rows' values as JSON (the same values, decoded).

An export goes to `features/customer_snapshot/cutoff=YYYY-MM-DD/export=<export_id>/`, a folder
never written before; `manifest.json` is written last, so a folder without it is unfinished and
ignored by `latest_export`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import msgpack
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore
from mlpipeline.core.progress import Progress
from mlpipeline.warehouse import tables_of

log = logging.getLogger(__name__)

FEATURE_VIEW = "customer_snapshot"
SOURCE_TABLE = "features.customer_snapshot"
EXPORT_ROOT = "features/customer_snapshot"
MANIFEST_NAME = "manifest.json"
# An export id starts with its creation time in this form (UTC), then a checksum prefix.
EXPORT_ID_TIME = "%Y%m%dT%H%M%S%fZ"
FORMAT_VERSION = 2
CHECKSUM_ALGORITHM = "sum mod 2^128 of blake2b-128(entity 0x1F packed-vector)"
ENCODING = (
    "MessagePack array in column order; integers as int, DECIMAL/DOUBLE as float 64, strings as "
    "str, DATE as str YYYY-MM-DD, TIMESTAMP as str YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC), NULL as nil"
)

# Declared SQL type (its name before any "(") -> wire kind.
SQL_KINDS = {
    **dict.fromkeys(
        ["TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"],
        "int",
    ),
    **dict.fromkeys(["DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL"], "float"),
    **dict.fromkeys(["VARCHAR", "TEXT", "STRING"], "str"),
    **dict.fromkeys(["BOOLEAN", "BOOL"], "bool"),
    "DATE": "date",
    "TIMESTAMP": "timestamp",
}
# Wire kind -> (DuckDB type the export casts to, Arrow type of the Parquet column).
KIND_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "int": ("BIGINT", pa.int64()),
    "float": ("DOUBLE", pa.float64()),
    "str": ("VARCHAR", pa.string()),
    "bool": ("BOOLEAN", pa.bool_()),
    "date": ("DATE", pa.date32()),
    "timestamp": ("TIMESTAMP", pa.timestamp("us")),
}


def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


DECODERS = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "date": date.fromisoformat,
    "timestamp": _parse_timestamp,
}


class ExportError(RuntimeError):
    """The snapshot cannot be exported as asked."""


class ExportNotFound(LookupError):
    """No complete export (folder with manifest.json) where one was expected."""


class FeatureSpecLike(Protocol):
    name: str
    type: str
    default: Any


class OnlineSpecLike(Protocol):
    """What the export needs from `mlpipeline.features.transform.OnlineSpec`."""

    entity_key: str
    ttl_days: int
    features: Sequence[FeatureSpecLike]


@dataclass(frozen=True)
class Column:
    """One online feature: declared SQL type, wire kind, default in wire form."""

    name: str
    type: str
    kind: str
    default: Any


def kind_of(name: str, sql_type: str) -> str:
    base = sql_type.split("(")[0].strip().upper()
    if base not in SQL_KINDS:
        raise ExportError(
            f"online feature {name!r} is declared with type {sql_type!r}, which the export does "
            f"not support; declare one of {sorted(SQL_KINDS)} in meta.online"
        )
    return SQL_KINDS[base]


def _wire_default(name: str, kind: str, value: Any) -> Any:
    """The declared default in the same JSON form a stored value would have."""
    if value is None:
        return None
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if kind == "date":
            return parse_day(value).isoformat()
        if kind == "timestamp":
            ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            if ts.tzinfo is not None:
                ts = ts.astimezone(UTC).replace(tzinfo=None)
            return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ExportError(
            f"default {value!r} of online feature {name!r} does not fit its kind {kind}: {exc}"
        ) from exc


def columns_from_spec(spec: OnlineSpecLike) -> list[Column]:
    if not spec.features:
        raise ExportError("the online spec declares no features; add them under meta.online")
    columns = []
    for feature in spec.features:
        if feature.name == spec.entity_key:
            raise ExportError(f"entity key {spec.entity_key!r} is also listed as a feature")
        kind = kind_of(feature.name, feature.type)
        default = _wire_default(feature.name, kind, feature.default)
        columns.append(Column(feature.name, feature.type, kind, default))
    return columns


def _wire_values(
    name: str, values: pa.ChunkedArray, kind: str, entities: pa.ChunkedArray
) -> list[Any]:
    """One column's values as the Python objects MessagePack writes (None for NULL)."""
    if kind == "float":
        finite = pc.is_finite(values)
        if pc.any(pc.invert(finite)).as_py():
            position = pc.index(finite, False).as_py()
            raise ExportError(
                f"feature {name!r} is {values[position].as_py()} for entity "
                f"{entities[position].as_py()}; NaN and infinities cannot be served. "
                "Fix the model so it yields NULL or a number."
            )
        return values.cast(pa.float64()).to_pylist()
    if kind == "date":
        return values.cast(pa.string()).to_pylist()
    if kind == "timestamp":
        iso = pc.utf8_replace_slice(values.cast(pa.string()), 10, 11, "T")
        return pc.binary_join_element_wise(iso, "Z", "").to_pylist()
    return values.to_pylist()


def _array_header(length: int) -> bytes:
    """MessagePack header of an array of `length` items."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


class SnapshotCodec:
    """Packs Arrow rows into wire values and unpacks them into typed dicts, per manifest."""

    def __init__(self, entity_key: str, columns: Sequence[Column]) -> None:
        self.entity_key = entity_key
        self.columns = list(columns)
        self._decoders = [(c.name, DECODERS[c.kind]) for c in self.columns]
        self._names = [c.name for c in self.columns]
        # Kinds MessagePack does not hand back as the right Python type: written as text.
        self._converted = [
            (i, c.kind) for i, c in enumerate(self.columns) if c.kind in ("date", "timestamp")
        ]
        self.schema = pa.schema(
            [pa.field(entity_key, pa.string(), nullable=False)]
            + [pa.field(c.name, KIND_TYPES[c.kind][1]) for c in self.columns]
        )

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> SnapshotCodec:
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ExportError(
                f"export {manifest.get('export_id')} (cutoff {manifest.get('cutoff')}) has wire "
                f"format {version!r}; this code reads format {FORMAT_VERSION}. Re-export the "
                "cutoff with the current code, then push, verify and switch it."
            )
        defaults = manifest["defaults"]
        columns = [
            Column(c["name"], c["type"], c["kind"], defaults.get(c["name"]))
            for c in manifest["columns"]
        ]
        return cls(manifest["entity_key"], columns)

    def pack(self, table: pa.Table | pa.RecordBatch) -> tuple[list[str], list[bytes]]:
        """Entity ids and their packed vectors, in the table's row order."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.combine_chunks()
        entities = table.column(self.entity_key).cast(pa.string())
        columns = [
            _wire_values(c.name, table.column(c.name), c.kind, entities) for c in self.columns
        ]
        pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        return entities.to_pylist(), [pack(row) for row in zip(*columns, strict=True)]

    def decode(self, values: Sequence[Any]) -> dict[str, Any]:
        if len(values) != len(self._decoders):
            raise ValueError(
                f"vector has {len(values)} values, the manifest declares {len(self._decoders)}"
            )
        return {
            name: None if value is None else decoder(value)
            for (name, decoder), value in zip(self._decoders, values, strict=True)
        }

    def unpack(self, packed: bytes) -> dict[str, Any]:
        return self.decode(msgpack.unpackb(packed))

    def unpack_many(
        self, values: Sequence[bytes | None], defaults: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Typed dicts for many packed vectors at once (None: the defaults, copied per row).

        The vectors are decoded as one MessagePack array (one C call), then only the text-encoded
        kinds (DATE, TIMESTAMP) are converted in Python.
        """
        width = len(self._decoders)
        present = [v for v in values if v is not None]
        decoded: list[dict[str, Any]] = []
        if present:
            rows = msgpack.unpackb(_array_header(len(present)) + b"".join(present))
            if len(rows) != len(present) or set(map(len, rows)) != {width}:
                bad = next((r for r in rows if len(r) != width), rows)
                raise ValueError(
                    f"vector has {len(bad)} values, the manifest declares {width}: {bad!r}"[:300]
                )
            for position, kind in self._converted:
                convert = DECODERS[kind]
                for row in rows:
                    if row[position] is not None:
                        row[position] = convert(row[position])
            names = self._names
            decoded = [dict(zip(names, row, strict=True)) for row in rows]
        if len(decoded) == len(values):
            return decoded
        fallback = self.defaults() if defaults is None else defaults
        found = iter(decoded)
        return [dict(fallback) if v is None else next(found) for v in values]

    def defaults(self) -> dict[str, Any]:
        return self.decode([c.default for c in self.columns])


def row_digests(entities: Sequence[str], packed: Sequence[bytes]) -> list[int]:
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes
    return [
        from_bytes(blake2b(e.encode() + b"\x1f" + p, digest_size=16).digest(), "little")
        for e, p in zip(entities, packed, strict=True)
    ]


class Checksum:
    """Order-independent content checksum of (entity, packed vector) rows."""

    def __init__(self) -> None:
        self.rows = 0
        self._total = 0

    def add(self, digests: Sequence[int]) -> None:
        self.rows += len(digests)
        self._total += sum(digests)

    def update(self, entities: Sequence[str], packed: Sequence[bytes]) -> None:
        self.add(row_digests(entities, packed))

    def hexdigest(self) -> str:
        return f"{self._total % (1 << 128):032x}"


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
