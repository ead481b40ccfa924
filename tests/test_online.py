"""Online store: stage, verify, switch and read snapshots on a real Redis server.

Exports come from real DuckDB snapshot tables (helpers of test_export) through the real
object stores, so the whole path export -> Redis -> reader is exercised.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
import redis
from test_export import DAY1, DAY2, DAY3, build_snapshot, expected_rows, export

from mlpipeline import online
from mlpipeline.core.config import ConfigurationError, Settings
from mlpipeline.core.objectstore import LocalStore, ObjectStore
from mlpipeline.devtools import localredis
from mlpipeline.online import (
    NoCurrentSnapshot,
    OnlineReader,
    OnlineStoreUnavailable,
    RollbackRefused,
    SnapshotNotVerified,
    StagingError,
    VerificationFailed,
    push_staged,
    switch,
    verify_staged,
)
from mlpipeline.pipeline import nightly

pytestmark = pytest.mark.integration

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
    idle = OnlineReader(redis_url)  # reads the first snapshot, then nothing for two switches
    results = [publish(redis_url, local_store, manifests[0])]
    assert idle.get("c0010") == expected_rows(db, DAY1)["c0010"]
    results += [publish(redis_url, local_store, m) for m in manifests[1:]]
    first, second, third = (m["export_id"] for m in manifests)
    idle._codecs.clear()  # as if evicted: its snapshot's keys and manifest are gone now
    assert idle.read(["c0010"]).rows == [expected_rows(db, DAY3)["c0010"]]

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


def test_a_rerun_of_the_newest_cutoff_keeps_the_previous_cutoff_as_rollback_target(
    db, redis_url, client, local_store
):
    day1, day2 = (export(db, local_store, day).manifest for day in (DAY1, DAY2))
    publish(redis_url, local_store, day1)
    publish(redis_url, local_store, day2)
    rerun = export(db, local_store, DAY2).manifest
    result = publish(redis_url, local_store, rerun)
    assert result["outcome"] == "switched"
    assert result["purged"] == {day2["export_id"]: CUSTOMERS}  # the replaced export of DAY2
    assert client.hget(online.PREVIOUS_KEY, "export_id").decode() == day1["export_id"]
    assert len(entity_keys(client, day1["export_id"])) == CUSTOMERS
    online.rollback(redis_url, local_store, reason="test", by="test")
    read = OnlineReader(redis_url).read(["c0010"])
    assert read.export_id == day1["export_id"]
    assert read.rows == [expected_rows(db, DAY1)["c0010"]]


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
        values = msgpack.unpackb(client.get(key))
        values[0] += 1
        client.set(key, msgpack.packb(values), keepttl=True)
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


def test_without_redis_url_the_library_refuses_and_starts_no_server(
    redis_url, tmp_path, monkeypatch, capsys
):
    from mlpipeline import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    with pytest.raises(ConfigurationError, match="REDIS_URL is not set"):
        online.redis_client(settings)
    with pytest.raises(ConfigurationError, match="REDIS_URL is not set"):
        cli.main(["online", "status"])
    assert not (tmp_path / "redis").exists()  # nothing started, nothing written

    # The CLI reads the local run's own server (what `make demo` started) when it answers.
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "url").write_text(redis_url)
    cli.main(["online", "status"])
    assert "current" in json.loads(capsys.readouterr().out)


def _events(client: redis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(online.SWITCHES_KEY)
    ]


def test_rollback_stays_pinned_through_nightly_retries_until_release(
    db, redis_url, client, local_store
):
    day1, day2 = (export(db, local_store, day).manifest for day in (DAY1, DAY2))
    publish(redis_url, local_store, day1)
    publish(redis_url, local_store, day2)
    reader = OnlineReader(redis_url)
    assert reader.read(["c0003"]).export_id == day2["export_id"]

    result = online.rollback(redis_url, local_store, reason="bad amounts", by="oncall")
    assert result["outcome"] == "rolled back" and result["export_id"] == day1["export_id"]
    assert result["current_before"] == {"export_id": day2["export_id"], "cutoff": "2026-01-06"}
    read = reader.read(["c0003", "c0004"])  # the reader notices the pointer moved
    assert read.export_id == day1["export_id"] and read.cutoff == "2026-01-05"
    assert read.rows == [expected_rows(db, DAY1)[e] for e in ("c0003", "c0004")]
    pin = online.status(redis_url)["pin"]
    assert pin["export_id"] == day1["export_id"] and pin["by"] == "oncall"
    assert pin["rolled_back_from"] == day2["export_id"] and pin["reason"] == "bad amounts"
    assert online.current_snapshot(redis_url)["pinned"] is True
    with pytest.raises(RollbackRefused, match="already pinned"):
        online.rollback(redis_url, local_store)

    # A retry of the nightly re-exports, pushes, verifies and switches the same day: skipped.
    retry = export(db, local_store, DAY2).manifest
    assert publish(redis_url, local_store, retry)["outcome"] == "skipped: pinned"
    # A switch of the very export rolled back from is skipped too; only the newest export
    # asked for while pinned is kept aside (pending), the one it replaces is deleted.
    again = switch(redis_url, day2)
    assert again["outcome"] == "skipped: pinned"
    assert again["purged"] == {retry["export_id"]: CUSTOMERS}
    # The next night is verified but kept aside too.
    day3 = export(db, local_store, DAY3).manifest
    skipped = publish(redis_url, local_store, day3)
    assert skipped["outcome"] == "skipped: pinned" and skipped["pinned_to"] == day1["export_id"]
    assert skipped["purged"] == {}  # day 2 stays: it is the previous snapshot
    assert reader.read(["c0003"]).export_id == day1["export_id"]
    assert online.status(redis_url)["pin"]["pending_export_id"] == day3["export_id"]
    assert len(entity_keys(client, day2["export_id"])) == CUSTOMERS  # kept as previous

    released = online.release(redis_url, local_store, switch_pending=True, by="oncall")
    assert released["outcome"] == "released"
    assert released["pending"] == {"export_id": day3["export_id"], "cutoff": "2026-01-07"}
    assert released["switch"]["outcome"] == "switched"
    assert released["switch"]["purged"] == {day2["export_id"]: CUSTOMERS}
    assert reader.read(["c0003"]).rows == [expected_rows(db, DAY3)["c0003"]]
    assert client.hget(online.PREVIOUS_KEY, "export_id").decode() == day1["export_id"]
    assert online.release(redis_url, local_store)["outcome"] == "not pinned"

    outcomes = [(e["outcome"], e["export_id"]) for e in _events(client)]
    assert outcomes[2:] == [
        ("rolled back", day1["export_id"]),
        ("skipped: pinned", retry["export_id"]),
        ("skipped: pinned", day2["export_id"]),
        ("skipped: pinned", day3["export_id"]),
        ("released", day1["export_id"]),
        ("switched", day3["export_id"]),
    ]
    # Rollback and release are recorded in the object store too (no warehouse involved).
    records = [
        json.loads(local_store.get_bytes(key))
        for key in local_store.list(online.EVENTS_PREFIX)
        if key.endswith(".json")
    ]
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("rollback", "rolled back"),
        ("release", "released"),
    ]
    assert records[0]["reason"] == "bad amounts" and records[0]["pinned"] is True
    # What was live when is read back from them (monitoring's freshness): the release switched
    # the pending export in; just before it, the rollback's target was live.
    live = online.live_at(local_store, datetime.now(UTC))
    assert (live["export_id"], live["cutoff"], live["action"]) == (
        day3["export_id"],
        "2026-01-07",
        "release",
    )
    released_at = datetime.strptime(released["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    live = online.live_at(local_store, released_at)
    assert (live["export_id"], live["action"]) == (day1["export_id"], "rollback")


def test_rollback_refuses_without_a_whole_previous_snapshot(db, redis_url, client, local_store):
    day1, day2 = (export(db, local_store, day).manifest for day in (DAY1, DAY2))
    publish(redis_url, local_store, day1)
    with pytest.raises(RollbackRefused, match="no previous snapshot"):
        online.rollback(redis_url, local_store)
    publish(redis_url, local_store, day2)
    client.delete(online.entity_prefix(day1["export_id"]) + "c0007")  # e.g. expired
    with pytest.raises(RollbackRefused, match="no longer whole in Redis.*1 of 300 staged keys"):
        online.rollback(redis_url, local_store)
    assert client.hget(online.CURRENT_KEY, "export_id").decode() == day2["export_id"]
    assert not client.exists(online.PIN_KEY)


def test_nightly_switch_task_is_skipped_while_a_rollback_is_pinned(
    db, redis_url, settings, monkeypatch
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = LocalStore(settings.local_store_root)
    day1, day2, day3 = (export(db, store, day).manifest for day in (DAY1, DAY2, DAY3))
    for manifest in (day1, day2):
        publish(redis_url, store, manifest)
    online.rollback(redis_url, store)
    push_staged(redis_url, store, day3)
    verify_staged(redis_url, day3)
    task_input = {"export_id": day3["export_id"], "prefix": day3["prefix"]}
    with pytest.raises(nightly.NothingToDo, match="pinned to export .*online release"):
        nightly.switch_online(task_input, {**task_input, "verified": True})
    assert online.current_snapshot(redis_url)["export_id"] == day1["export_id"]
    actions = [key.rsplit("/", 1)[1].split("-")[1] for key in store.list(online.EVENTS_PREFIX)]
    assert actions == ["rollback", "switch"]  # the skipped switch is on record too


PUSH_IN_SUBPROCESS = """
import json, sys, time
from pathlib import Path
from mlpipeline import online
from mlpipeline.online import writer
from mlpipeline.core.objectstore import LocalStore

chunks = writer.packed_chunks

def slowly(*args, **kwargs):  # a big export's pace, so the kill lands half-way
    for chunk in chunks(*args, **kwargs):
        yield chunk
        time.sleep(0.05)

writer.packed_chunks = slowly
manifest = json.loads(Path(sys.argv[1]).read_text())
online.push_staged(sys.argv[3], LocalStore(Path(sys.argv[2])), manifest, chunk_size=16)
"""


def test_push_killed_half_way_keeps_current_whole_and_the_retry_completes(
    db, redis_url, client, local_store, tmp_path
):
    old = export(db, local_store, DAY1).manifest
    new = export(db, local_store, DAY2).manifest
    publish(redis_url, local_store, old)
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(new))
    index = online.index_key(new["export_id"])
    chunks = -(-CUSTOMERS // 16)
    process = subprocess.Popen(
        [sys.executable, "-c", PUSH_IN_SUBPROCESS, str(manifest_file), str(local_store.root)]
        + [redis_url]
    )
    try:
        deadline = time.monotonic() + 60
        while client.llen(index) < 5 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    staged_chunks = client.llen(index)
    assert 5 <= staged_chunks < chunks, "the push was not killed half-way"
    assert client.hget(online.export_key(new["export_id"]), "status") == b"staging"

    reader = OnlineReader(redis_url)
    before, after = expected_rows(db, DAY1), expected_rows(db, DAY2)
    entities = sorted(before)
    read = reader.read(entities)
    assert read.export_id == old["export_id"]
    assert read.rows == [before[e] for e in entities]
    with pytest.raises(VerificationFailed, match="status 'staging'.*did not finish"):
        verify_staged(redis_url, new)
    with pytest.raises(SnapshotNotVerified, match="status: failed"):
        switch(redis_url, new)

    stats = push_staged(redis_url, local_store, new, chunk_size=16)  # the task's retry
    assert stats["rows"] == CUSTOMERS and stats["chunks"] == chunks
    assert verify_staged(redis_url, new)["keys_found"] == CUSTOMERS
    assert switch(redis_url, new)["outcome"] == "switched"
    assert reader.read(entities).rows == [after[e] for e in entities]
    assert len(entity_keys(client, new["export_id"])) == CUSTOMERS


def test_vectors_expire_with_the_manifest_ttl(db, redis_url, client, local_store):
    """Keys carry the TTL for real: once it passes, the entity is unknown (defaults)."""
    manifest = {**export(db, local_store, DAY1).manifest, "ttl_seconds": 2}
    publish(redis_url, local_store, manifest)
    reader = OnlineReader(redis_url)
    assert reader.read(["c0001"]).known == [True]
    deadline = time.monotonic() + 10
    while client.exists(online.entity_prefix(manifest["export_id"]) + "c0001"):
        assert time.monotonic() < deadline, "the key did not expire"
        time.sleep(0.1)
    read = reader.read(["c0001", "c0002"])
    assert read.known == [False, False] and read.rows == [DEFAULTS, DEFAULTS]
    assert read.export_id == manifest["export_id"]  # the pointer and manifest stay


def test_connect_retries_with_backoff_until_redis_answers(tmp_path, caplog):
    port = localredis.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    # redis-py retries a refused connection itself for about 1.5 s; start later than that.
    started = threading.Timer(2.5, localredis.start, args=(tmp_path, port, False))
    started.start()
    try:
        with caplog.at_level(logging.WARNING, logger="mlpipeline.online"):
            client = online.connect(url, attempts=8, delay=0.1)
        assert client.ping()
        retries = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
        assert retries and "(attempt 1/8)" in retries[0] and "retrying in 0.1s" in retries[0]
    finally:
        started.join()
        localredis.stop(url)


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test ca"))
        .issuer_name(name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_redis_url_with_tls_password_and_database_number(db, local_store, tmp_path, monkeypatch):
    ca, cert, key = _tls_files(tmp_path)
    port = localredis.free_port()
    server = subprocess.Popen(
        [
            localredis.redis_server_binary(),
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"rediss://:s3cret@127.0.0.1:{port}/3?ssl_ca_certs={ca}"
    try:
        monkeypatch.setenv("REDIS_URL", url)
        client = online.redis_client(Settings.from_env())  # retries while the server starts
        assert client.connection_pool.connection_kwargs["db"] == 3
        manifest = export(db, local_store, DAY1).manifest
        publish(url, local_store, manifest)
        reader = OnlineReader(online.redis_client(url))
        assert reader.get("c0042") == expected_rows(db, DAY1)["c0042"]
        assert client.dbsize() > CUSTOMERS
        assert online.redis_client(url.replace("/3?", "/0?")).dbsize() == 0

        wrong = url.replace("s3cret", "nope")
        with pytest.raises(OnlineStoreUnavailable, match="refused the credentials") as refused:
            online.redis_client(wrong)
        assert "nope" not in str(refused.value)
        untrusted = url.split("?")[0]  # TLS without the CA: the certificate is refused
        with pytest.raises(OnlineStoreUnavailable, match=r"rediss://:\*\*\*@127.0.0.1"):
            online.connect(untrusted, attempts=1)
    finally:
        server.terminate()
        server.wait()


def test_online_get_says_when_a_customer_is_unknown_and_exits_non_zero(
    db, redis_url, local_store, monkeypatch, capsys
):
    from mlpipeline import cli

    publish(redis_url, local_store, export(db, local_store, DAY1).manifest)
    monkeypatch.setenv("REDIS_URL", redis_url)
    cli.main(["online", "get", "c0001"])
    assert json.loads(capsys.readouterr().out)["txn_count_24h"] >= 0
    with pytest.raises(SystemExit, match="'never-seen' is not in the current snapshot") as unknown:
        cli.main(["online", "get", "never-seen"])
    assert unknown.value.code != 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == DEFAULTS
