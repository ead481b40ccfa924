"""Online store: stage, verify, switch and read snapshots on a real Redis server.

Exports come from real DuckDB snapshot tables (helpers of test_export) through the real
object stores, so the whole path export -> Redis -> reader is exercised.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from test_export import DAY1, DAY2, DAY3, build_snapshot, expected_rows, export

from mlpipeline import localredis, online
from mlpipeline.config import Settings
from mlpipeline.objectstore import ObjectStore
from mlpipeline.online import (
    NoCurrentSnapshot,
    OnlineReader,
    OnlineStoreUnavailable,
    SnapshotNotVerified,
    StagingError,
    VerificationFailed,
    push_staged,
    switch,
    verify_staged,
)

CUSTOMERS = 300
TTL = 35 * 86_400
DEFAULTS = {
    "txn_count_24h": 0,
    "amount_sum_30d": 0.0,
    "online_share_30d": 0.0,
    "usual_country": None,
    "last_txn_ts": None,
}


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_snapshot(tmp_path / "w.duckdb", days=(DAY1, DAY2, DAY3), customers=CUSTOMERS)


@pytest.fixture()
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def publish(url: str, store: ObjectStore, manifest: dict) -> dict:
    push_staged(url, store, manifest, chunk_size=64)
    verify_staged(url, manifest)
    return switch(url, manifest)


def entity_keys(client: redis.Redis, export_id: str) -> list[bytes]:
    return list(client.scan_iter(match=online.entity_prefix(export_id) + "*", count=1000))


@pytest.mark.parametrize("store_fixture", ["local_store", "s3_store"])
def test_push_verify_switch_serves_exactly_the_exported_values(
    request, db, redis_url, store_fixture
):
    store = request.getfixturevalue(store_fixture)
    manifest = export(db, store, DAY1, row_group_size=100).manifest

    stats = push_staged(redis_url, store, manifest, chunk_size=64)
    assert stats["rows"] == CUSTOMERS and stats["chunks"] == 5
    report = verify_staged(redis_url, manifest, sample_size=50)
    assert report["keys_found"] == CUSTOMERS and report["sample_checked"] == 50
    assert report["checksum"] == manifest["checksum"]
    result = switch(redis_url, manifest)
    assert result["outcome"] == "switched" and result["current_before"] is None
    assert result["export_id"] == manifest["export_id"] and result["cutoff"] == "2026-01-05"

    expected = expected_rows(db, DAY1)
    reader = OnlineReader(redis_url)
    entities = sorted(expected) + ["never-seen", "c9999"]
    read = reader.read(entities)
    assert read.export_id == manifest["export_id"] and read.cutoff == "2026-01-05"
    assert read.rows == [expected[e] for e in sorted(expected)] + [DEFAULTS, DEFAULTS]
    one = reader.get("c0001")
    assert one == expected["c0001"]
    assert type(one["txn_count_24h"]) is int and type(one["amount_sum_30d"]) is float
    assert type(one["last_txn_ts"]) is datetime and one["last_txn_ts"].tzinfo is None
    assert reader.get_many(["c0002", "unknown"]) == [expected["c0002"], DEFAULTS]
    many = [f"c{i:04d}" for i in range(2500)]  # more than one server-side MGET slice
    assert reader.get_many(many) == [expected.get(e, DEFAULTS) for e in many]


def test_keys_carry_the_manifest_ttl(db, redis_url, client, local_store):
    manifest = export(db, local_store, DAY1).manifest
    push_staged(redis_url, local_store, manifest, chunk_size=64)
    export_id = manifest["export_id"]
    keys = entity_keys(client, export_id)
    assert len(keys) == CUSTOMERS
    pipe = client.pipeline()
    for key in keys:
        pipe.ttl(key)
    ttls = pipe.execute()
    assert all(TTL - 60 < ttl <= TTL for ttl in ttls)
    assert TTL - 60 < client.ttl(online.index_key(export_id)) <= TTL
    assert TTL - 60 < client.ttl(online.export_key(export_id)) <= TTL
    assert client.hget(online.export_key(export_id), "status") == b"staged"

    verify_staged(redis_url, manifest)
    switch(redis_url, manifest)
    # The live snapshot's manifest stays as long as it is current or previous.
    assert client.ttl(online.export_key(export_id)) == -1
    assert client.hget(online.CURRENT_KEY, "export_id").decode() == export_id


def test_older_cutoff_is_refused_and_equal_cutoff_replaces(db, redis_url, client, local_store):
    day2 = export(db, local_store, DAY2).manifest
    assert publish(redis_url, local_store, day2)["outcome"] == "switched"

    day1 = export(db, local_store, DAY1).manifest
    older = publish(redis_url, local_store, day1)
    assert older["outcome"] == "skipped: older"
    assert older["current_before"] == {"export_id": day2["export_id"], "cutoff": "2026-01-06"}
    assert older["purged"] == {day1["export_id"]: CUSTOMERS}  # a refused export is not kept
    assert entity_keys(client, day1["export_id"]) == []
    reader = OnlineReader(redis_url)
    assert reader.read(["c0005"]).export_id == day2["export_id"]

    rerun = export(db, local_store, DAY2).manifest
    equal = publish(redis_url, local_store, rerun)
    assert equal["outcome"] == "switched"
    assert equal["current_before"] == {"export_id": day2["export_id"], "cutoff": "2026-01-06"}
    read = reader.read(["c0005"])
    assert read.export_id == rerun["export_id"] and read.rows == [expected_rows(db, DAY2)["c0005"]]
    assert client.hget(online.PREVIOUS_KEY, "export_id").decode() == day2["export_id"]
    assert switch(redis_url, rerun)["outcome"] == "already current"

    events = [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(online.SWITCHES_KEY)
    ]
    assert [(e["outcome"], e["cutoff"]) for e in events] == [
        ("switched", "2026-01-06"),
        ("skipped: older", "2026-01-05"),
        ("switched", "2026-01-06"),
        ("already current", "2026-01-06"),
    ]
    assert events[2]["current_before"] == day2["export_id"]


def test_older_snapshots_are_deleted_and_previous_kept(db, redis_url, client, local_store):
    manifests = [export(db, local_store, day).manifest for day in (DAY1, DAY2, DAY3)]
    results = [publish(redis_url, local_store, m) for m in manifests]
    first, second, third = (m["export_id"] for m in manifests)

    assert results[1]["purged"] == {}
    assert results[2]["purged"] == {first: CUSTOMERS}
    assert entity_keys(client, first) == []
    assert not client.exists(online.export_key(first), online.index_key(first))
    assert len(entity_keys(client, second)) == CUSTOMERS  # previous, kept for rollback
    assert client.exists(online.export_key(second))
    assert len(entity_keys(client, third)) == CUSTOMERS
    assert client.hget(online.CURRENT_KEY, "export_id").decode() == third
    assert client.hget(online.PREVIOUS_KEY, "export_id").decode() == second
    assert client.scard(online.RETIRED_KEY) == 0
    # The previous snapshot is still readable as it was exported.
    read = OnlineReader(redis_url).read(["c0010"], export_id=second)
    assert read.cutoff == "2026-01-06" and read.rows == [expected_rows(db, DAY2)["c0010"]]


def test_readers_never_see_a_push_or_a_mix_of_snapshots(db, redis_url, local_store):
    old = export(db, local_store, DAY1).manifest
    new = export(db, local_store, DAY2).manifest
    publish(redis_url, local_store, old)
    expected = {
        old["export_id"]: expected_rows(db, DAY1),
        new["export_id"]: expected_rows(db, DAY2),
    }
    entities = sorted(expected[old["export_id"]])
    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def read_continuously() -> None:
        reader = OnlineReader(redis_url)
        try:
            while not stop.is_set():
                read = reader.read(entities)
                seen.append(read.export_id)
                if read.rows != [expected[read.export_id][e] for e in entities]:
                    errors.append(f"mixed or partial read from {read.export_id}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    thread = threading.Thread(target=read_continuously)
    thread.start()
    try:
        push_staged(redis_url, local_store, new, chunk_size=8)
        verify_staged(redis_url, new)
        during_staging = len(seen)
        switch(redis_url, new)
        after = len(seen)
        deadline = time.monotonic() + 10
        while len(seen) < after + 5 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert during_staging > 0 and set(seen[:during_staging]) == {old["export_id"]}
    assert seen[-1] == new["export_id"]


@pytest.mark.parametrize("tamper", ["change-value", "delete-key", "drop-ttl"])
def test_verify_fails_on_tampered_staging(db, redis_url, client, local_store, tamper):
    manifest = export(db, local_store, DAY1).manifest
    push_staged(redis_url, local_store, manifest, chunk_size=64)
    entity = manifest["parity_sample"][0]["entity"]
    key = online.entity_prefix(manifest["export_id"]) + entity
    if tamper == "change-value":
        values = json.loads(client.get(key))
        values[0] += 1
        client.set(key, json.dumps(values, separators=(",", ":")), keepttl=True)
        message = "checksum recomputed from Redis"
    elif tamper == "delete-key":
        client.delete(key)
        message = rf"1 of {CUSTOMERS} staged keys are missing \(e.g. \['{entity}'\]\)"
    else:
        client.persist(key)
        message = "staged keys without a TTL"

    with pytest.raises(VerificationFailed, match=message):
        verify_staged(redis_url, manifest)
    assert client.hget(online.export_key(manifest["export_id"]), "status") == b"failed"
    with pytest.raises(SnapshotNotVerified, match="status: failed"):
        switch(redis_url, manifest)
    assert not client.exists(online.CURRENT_KEY)


def test_switch_refuses_unverified_exports(db, redis_url, local_store):
    manifest = export(db, local_store, DAY1).manifest
    with pytest.raises(SnapshotNotVerified, match="status: not staged"):
        switch(redis_url, manifest)
    push_staged(redis_url, local_store, manifest)
    with pytest.raises(SnapshotNotVerified, match="status: staged.*run verify_staged"):
        switch(redis_url, manifest)
    verify_staged(redis_url, manifest)
    push_staged(redis_url, local_store, manifest)  # a re-push must be verified again
    with pytest.raises(SnapshotNotVerified, match="status: staged"):
        switch(redis_url, manifest)


def test_push_is_idempotent(db, redis_url, client, local_store):
    manifest = export(db, local_store, DAY1).manifest
    push_staged(redis_url, local_store, manifest, chunk_size=64)
    keys = sorted(entity_keys(client, manifest["export_id"]))
    values = client.mget(keys)
    stats = push_staged(redis_url, local_store, manifest, chunk_size=64)
    assert stats["chunks"] == 5 == client.llen(online.index_key(manifest["export_id"]))
    assert sorted(entity_keys(client, manifest["export_id"])) == keys
    assert client.mget(keys) == values
    assert verify_staged(redis_url, manifest)["keys_found"] == CUSTOMERS


def test_push_refuses_files_that_do_not_match_the_manifest(db, redis_url, client, local_store):
    manifest = export(db, local_store, DAY1).manifest
    forged = {**manifest, "checksum": "0" * 32}
    with pytest.raises(StagingError, match="does not match its manifest: checksum"):
        push_staged(redis_url, local_store, forged)
    assert client.hget(online.export_key(manifest["export_id"]), "status") == b"failed"
    with pytest.raises(VerificationFailed, match="status 'failed'"):
        verify_staged(redis_url, forged)


def test_reader_and_connection_errors_say_what_to_do(redis_url, settings, monkeypatch):
    with pytest.raises(NoCurrentSnapshot, match="no snapshot has been switched in yet"):
        OnlineReader(redis_url).get("c0001")
    with pytest.raises(online.OnlineStoreError, match="has no manifest in Redis"):
        OnlineReader(redis_url).read(["c0001"], export_id="20260101T000000000000Z-deadbeef")

    url = f"redis://:s3cret@127.0.0.1:{localredis.free_port()}/0"
    with pytest.raises(OnlineStoreUnavailable) as failure:
        online.connect(url, attempts=2, delay=0.01)
    assert "redis://:***@127.0.0.1" in str(failure.value) and "s3cret" not in str(failure.value)

    monkeypatch.setenv("REDIS_URL", redis_url)
    assert online.redis_client(Settings.from_env()).ping()
