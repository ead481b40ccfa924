"""Snapshot export to immutable folders, on a real DuckDB file and real object stores.

The snapshot table is built here by hand (not by dbt) with every wire kind and NULLs, so the
export's contract is tested on its own. test_online imports these helpers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.features.export import ExportNotFound, export_snapshot, latest_export, read_manifest
from mlpipeline.features.wire_format import ExportError, SnapshotCodec


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    default: Any = None


@dataclass(frozen=True)
class Spec:
    entity_key: str
    ttl_days: int
    features: list[Feature]


SPEC = Spec(
    "customer_id",
    35,
    [
        Feature("txn_count_24h", "BIGINT", 0),
        Feature("amount_sum_30d", "DECIMAL(18,2)", 0),
        Feature("online_share_30d", "DOUBLE", 0.0),
        Feature("usual_country", "VARCHAR", None),
        Feature("last_txn_ts", "TIMESTAMP", None),
    ],
)
FEATURES = [f.name for f in SPEC.features]
DAY1, DAY2, DAY3 = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)
DBT_HASH = "0f" * 32


def build_snapshot(db: Path, days: tuple[date, ...] = (DAY1, DAY2), customers: int = 60) -> Path:
    """features.customer_snapshot with mixed types, NULLs, awkward strings, values per day."""
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        con.execute(
            """CREATE TABLE IF NOT EXISTS features.customer_snapshot (
                customer_id VARCHAR, cutoff_date DATE, cutoff_ts TIMESTAMP,
                available_at TIMESTAMP, txn_count_24h BIGINT, amount_sum_30d DECIMAL(18,2),
                online_share_30d DOUBLE, usual_country VARCHAR, last_txn_ts TIMESTAMP,
                built_from VARCHAR)"""
        )
        for shift, day in enumerate(days):
            con.execute(
                """
                INSERT INTO features.customer_snapshot
                SELECT
                    printf('c%04d', i), $day, $day + INTERVAL 1 DAY, $day + INTERVAL 26 HOUR,
                    (i * 7 + $shift) % 13,
                    CASE WHEN i % 9 = 0 THEN NULL
                         ELSE ((i * 123456 + $shift) / 100)::DECIMAL(18,2) END,
                    CASE WHEN i % 11 = 0 THEN NULL ELSE (i + $shift) / 3.0 END,
                    CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN 'FR'
                         WHEN 2 THEN 'Zürich "q" \\ ' || chr(10) || 'x' ELSE 'DE' END,
                    CASE WHEN i % 6 = 0 THEN NULL
                         ELSE $day::TIMESTAMP + to_microseconds(i * 3600000007 + $shift) END,
                    'lineage'
                FROM range($customers) AS t(i)
                """,
                {"day": day, "shift": shift, "customers": customers},
            )
    return db


def expected_rows(db: Path, day: date) -> dict[str, dict[str, Any]]:
    """What a reader must return per entity: DECIMAL as float, TIMESTAMP as naive datetime."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            f"SELECT customer_id, {', '.join(FEATURES)} FROM features.customer_snapshot "
            "WHERE cutoff_date = ?",
            [day],
        ).fetchall()
    out = {}
    for key, count, amount, share, country, last_ts in rows:
        out[key] = {
            "txn_count_24h": count,
            "amount_sum_30d": None if amount is None else float(amount),
            "online_share_30d": share,
            "usual_country": country,
            "last_txn_ts": last_ts,
        }
    return out


def export(db: Path, store: ObjectStore, day: date, **kwargs: Any):
    with duckdb.connect(str(db)) as con:
        return export_snapshot(con, store, day, SPEC, DBT_HASH, **kwargs)


@pytest.mark.unit
def test_each_export_is_a_new_folder_and_never_rewrites(tmp_path, local_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    first = export(db, local_store, DAY1)
    first_files = {k: local_store.get_bytes(k) for k in local_store.list(first.prefix)}
    second = export(db, local_store, DAY1)

    assert first.export_id != second.export_id and first.prefix != second.prefix
    assert second.export_id > first.export_id  # sortable: newest last
    assert first.prefix.startswith("features/customer_snapshot/cutoff=2026-01-05/export=")
    assert {k: local_store.get_bytes(k) for k in local_store.list(first.prefix)} == first_files
    assert first.checksum == second.checksum  # same content, same checksum
    assert latest_export(local_store, DAY1)["export_id"] == second.export_id
    assert latest_export(local_store, "2026-01-05") == read_manifest(local_store, second.prefix)


@pytest.mark.integration
def test_manifest_describes_the_export(tmp_path, s3_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    result = export(
        db, s3_store, DAY2, incomplete_history=True, missing_batches=["transactions-2026-01-03"]
    )
    manifest = read_manifest(s3_store, result.prefix.rstrip("/"))

    assert manifest == result.manifest
    assert manifest["cutoff"] == "2026-01-06" and manifest["export_id"] == result.export_id
    assert manifest["entity_key"] == "customer_id"
    assert manifest["columns"] == [
        {"name": "txn_count_24h", "type": "BIGINT", "kind": "int"},
        {"name": "amount_sum_30d", "type": "DECIMAL(18,2)", "kind": "float"},
        {"name": "online_share_30d", "type": "DOUBLE", "kind": "float"},
        {"name": "usual_country", "type": "VARCHAR", "kind": "str"},
        {"name": "last_txn_ts", "type": "TIMESTAMP", "kind": "timestamp"},
    ]
    assert manifest["defaults"] == {
        "txn_count_24h": 0,
        "amount_sum_30d": 0.0,
        "online_share_30d": 0.0,
        "usual_country": None,
        "last_txn_ts": None,
    }
    assert isinstance(manifest["defaults"]["amount_sum_30d"], float)
    assert manifest["ttl_seconds"] == 35 * 86_400
    assert manifest["row_count"] == 60 and len(manifest["checksum"]) == 32
    assert manifest["dbt_manifest_hash"] == DBT_HASH
    assert manifest["incomplete_history"] is True
    assert manifest["missing_batches"] == ["transactions-2026-01-03"]
    assert sum(f["rows"] for f in manifest["files"]) == 60
    for entry in manifest["files"]:
        assert s3_store.exists(result.prefix + entry["name"])
    assert manifest["created_at"].endswith("Z")
    assert sorted(s3_store.list(result.prefix)) == sorted(
        [result.prefix + "manifest.json"] + [result.prefix + f["name"] for f in manifest["files"]]
    )
    # Parity sample: exported rows, in wire form, that the Redis verify reads back.
    codec = SnapshotCodec.from_manifest(manifest)
    expected = expected_rows(db, DAY2)
    assert len(manifest["parity_sample"]) == 60  # fewer rows than the sample size
    for row in manifest["parity_sample"]:
        assert codec.decode(row["values"]) == expected[row["entity"]]


@pytest.mark.unit
def test_parquet_holds_typed_rows_sorted_in_row_groups(tmp_path, local_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    result = export(db, local_store, DAY1, row_group_size=16, rows_per_file=32)
    files = result.manifest["files"]
    assert [f["rows"] for f in files] == [32, 28]

    tables = []
    for entry in files:
        path = local_store.download(result.prefix + entry["name"], tmp_path / entry["name"])
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.num_row_groups == 2
        tables.append(parquet.read())
    table = pa.concat_tables(tables)
    assert table.schema.names == ["customer_id", *FEATURES]
    assert table.schema.field("amount_sum_30d").type == pa.float64()
    assert table.schema.field("last_txn_ts").type == pa.timestamp("us")
    keys = table.column("customer_id").to_pylist()
    assert keys == sorted(keys)  # sorted by entity key
    expected = expected_rows(db, DAY1)
    assert {r.pop("customer_id"): r for r in table.to_pylist()} == expected
    assert any(r["usual_country"] is None for r in expected.values())  # NULLs kept


@pytest.mark.unit
def test_checksum_depends_on_content_not_layout(tmp_path, local_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    one = export(db, local_store, DAY1)
    many = export(db, local_store, DAY1, row_group_size=7, rows_per_file=14, parity_sample_size=5)
    assert len(many.manifest["files"]) == 5
    assert one.checksum == many.checksum
    assert len(many.manifest["parity_sample"]) == 5
    # The sample depends only on the content: the 5 smallest-digest rows of the full sample.
    full = {row["entity"] for row in one.manifest["parity_sample"]}
    assert {row["entity"] for row in many.manifest["parity_sample"]} <= full

    with duckdb.connect(str(db)) as con:
        con.execute(
            "UPDATE features.customer_snapshot SET online_share_30d = online_share_30d + 1e-9 "
            "WHERE customer_id = 'c0007' AND cutoff_date = ?",
            [DAY1],
        )
    assert export(db, local_store, DAY1).checksum != one.checksum


@pytest.mark.unit
def test_wire_format_round_trips_typed_values(tmp_path, local_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    manifest = export(db, local_store, DAY1).manifest
    path = local_store.download(
        manifest["prefix"] + manifest["files"][0]["name"], tmp_path / "p.parquet"
    )
    codec = SnapshotCodec.from_manifest(manifest)
    entities, packed = codec.pack(pq.read_table(path))
    expected = expected_rows(db, DAY1)
    assert {e: codec.unpack(p) for e, p in zip(entities, packed, strict=True)} == expected
    # c0002 has the awkward string; c0001 a timestamp with microseconds.
    row = msgpack.unpackb(packed[entities.index("c0002")])
    assert row[3] == 'Zürich "q" \\ \nx'
    assert msgpack.unpackb(packed[entities.index("c0001")])[4] == "2026-01-05T01:00:00.000007Z"
    assert codec.defaults() == {
        "txn_count_24h": 0,
        "amount_sum_30d": 0.0,
        "online_share_30d": 0.0,
        "usual_country": None,
        "last_txn_ts": None,
    }
    # The documented format, byte for byte: a MessagePack array, DECIMAL as float 64 (even a
    # whole number), NULL as nil, TIMESTAMP as text.
    table = pa.table(
        {
            "customer_id": ["x"],
            "txn_count_24h": [3],
            "amount_sum_30d": [5.0],
            "online_share_30d": [None],
            "usual_country": ["FR"],
            "last_txn_ts": [datetime(2026, 1, 5, 1, 0, 0, 7)],
        },
        schema=codec.schema,
    )
    vector = codec.pack(table)[1][0]
    assert vector == b"\x95\x03\xcb" + struct.pack(">d", 5.0) + b"\xc0\xa2FR\xbb" + (
        b"2026-01-05T01:00:00.000007Z"
    )
    assert codec.unpack(vector)["amount_sum_30d"] == 5.0
    assert type(codec.unpack(vector)["amount_sum_30d"]) is float

    # The bulk decoder readers use gives the same typed rows, defaults where a value is None.
    many = codec.unpack_many([*packed, None, *packed[:1]])
    assert many[: len(packed)] == [expected[e] for e in entities]
    assert many[len(packed)] == codec.defaults() and many[-1] == expected[entities[0]]
    assert codec.unpack_many(packed[:1]) == [expected[entities[0]]]
    assert codec.unpack_many([None]) == [codec.defaults()]
    with pytest.raises(ValueError, match="vector has 2 values, the manifest declares 5"):
        codec.unpack_many([msgpack.packb([1, 2]), packed[0]])


@pytest.mark.unit
def test_latest_export_ignores_unfinished_folders(tmp_path, local_store):
    db = build_snapshot(tmp_path / "w.duckdb")
    done = export(db, local_store, DAY1)
    unfinished = "features/customer_snapshot/cutoff=2026-01-05/export=99991231T000000000000Z-x/"
    local_store.put_bytes(unfinished + "part-00000.parquet", b"half written")
    assert latest_export(local_store, DAY1)["export_id"] == done.export_id
    with pytest.raises(ExportNotFound, match="no complete export of cutoff 2026-01-06"):
        latest_export(local_store, DAY2)
    with pytest.raises(ExportNotFound, match="unfinished"):
        read_manifest(local_store, unfinished)


@pytest.mark.parametrize(
    ("sql", "spec", "message"),
    [
        (
            "ALTER TABLE features.customer_snapshot DROP COLUMN usual_country",
            SPEC,
            r"lacks the online columns \['usual_country'\]",
        ),
        (
            "DELETE FROM features.customer_snapshot WHERE cutoff_date = '2026-01-05'",
            SPEC,
            "no rows for cutoff 2026-01-05",
        ),
        (
            "UPDATE features.customer_snapshot SET customer_id = NULL WHERE customer_id = 'c0001'",
            SPEC,
            "1 rows with NULL customer_id and 0 with a newline",
        ),
        (
            "INSERT INTO features.customer_snapshot SELECT * FROM features.customer_snapshot "
            "WHERE customer_id = 'c0003'",
            SPEC,
            r"several rows per customer_id .*c0003",
        ),
        (
            "UPDATE features.customer_snapshot SET online_share_30d = 'nan'::DOUBLE "
            "WHERE customer_id = 'c0004'",
            SPEC,
            "'online_share_30d' is nan for entity c0004",
        ),
        (
            "SELECT 1",
            Spec("customer_id", 35, [Feature("txn_count_24h", "INTERVAL")]),
            "type 'INTERVAL'",
        ),
        (
            "SELECT 1",
            Spec("customer_id", 35, [Feature("txn_count_24h", "BIGINT", "many")]),
            "default 'many' of online feature 'txn_count_24h'",
        ),
    ],
    ids=[
        "missing-column",
        "no-rows",
        "null-key",
        "duplicate-key",
        "nan",
        "unsupported-type",
        "bad-default",
    ],
)
@pytest.mark.unit
def test_export_refuses_what_it_cannot_serve(tmp_path, local_store, sql, spec, message):
    db = build_snapshot(tmp_path / "w.duckdb", days=(DAY1,))
    with duckdb.connect(str(db)) as con:
        con.execute(sql)
        with pytest.raises(ExportError, match=message):
            export_snapshot(con, local_store, DAY1, spec, DBT_HASH)
    assert local_store.list("features/") == []  # nothing half-written is left behind
