"""A snapshot goes live: push it aside, verify it against its manifest, switch it in atomically."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import redis

from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore
from mlpipeline.core.progress import Progress
from mlpipeline.features.export import FEATURE_VIEW, ExportNotFound
from mlpipeline.features.wire_format import Checksum, SnapshotCodec
from mlpipeline.online.connection import as_client
from mlpipeline.online.exports import purge_retired
from mlpipeline.online.keys import (
    CHUNK_SIZE,
    CURRENT_KEY,
    PIN_KEY,
    POINTER_KEY,
    PREVIOUS_KEY,
    RETIRED_KEY,
    SWITCH_EVENTS_KEPT,
    SWITCHES_KEY,
    SnapshotNotVerified,
    StagingError,
    VerificationFailed,
    decoded,
    encoded,
    entity_prefix,
    export_key,
    index_key,
    lua_script,
    utc_now,
)
from mlpipeline.online.reader import OnlineReader

log = logging.getLogger(__name__)


def _begin_staging(client: redis.Redis, manifest: dict[str, Any]) -> None:
    """Reset the export's staging state: a re-push starts over and must be verified again."""
    export_id = manifest["export_id"]
    summary = {k: v for k, v in manifest.items() if k != "parity_sample"}
    pipe = client.pipeline(transaction=True)
    pipe.srem(RETIRED_KEY, export_id)
    pipe.delete(index_key(export_id), export_key(export_id))
    pipe.hset(
        export_key(export_id),
        mapping={
            "export_id": export_id,
            "cutoff": manifest["cutoff"],
            "manifest": json.dumps(summary),
            "row_count": manifest["row_count"],
            "checksum": manifest["checksum"],
            "ttl_seconds": manifest["ttl_seconds"],
            "status": "staging",
            "staging_started_at": utc_now(),
        },
    )
    pipe.expire(export_key(export_id), int(manifest["ttl_seconds"]))
    pipe.execute()


def _download(store: ObjectStore, manifest: dict[str, Any], name: str, folder: Path) -> Path:
    key = manifest["prefix"] + name
    try:
        return store.download(key, folder / name)
    except ObjectNotFound as exc:
        raise ExportNotFound(
            f"{store.url}/{key}, listed in the manifest of export {manifest['export_id']}, is "
            f"missing; re-export cutoff {manifest['cutoff']}"
        ) from exc


def packed_chunks(
    store: ObjectStore, manifest: dict[str, Any], codec: SnapshotCodec, chunk_size: int
) -> Iterator[tuple[list[str], list[bytes]]]:
    """The export's rows as packed chunks, reading one Parquet file (row group) at a time."""
    columns = [codec.entity_key, *(c.name for c in codec.columns)]
    with tempfile.TemporaryDirectory(prefix="snapshot-push-") as tmp:
        for entry in manifest["files"]:
            path = _download(store, manifest, entry["name"], Path(tmp))
            # pre_buffer off: it caches every column chunk read until the file is closed.
            with pq.ParquetFile(path, pre_buffer=False) as parquet:
                for batch in parquet.iter_batches(batch_size=chunk_size, columns=columns):
                    if batch.num_rows:
                        yield codec.pack(batch)
            path.unlink()


def push_staged(
    client_or_url: redis.Redis | str,
    store: ObjectStore,
    manifest: dict[str, Any],
    *,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, Any]:
    """Write the export's vectors into its staging namespace, `chunk_size` entities per call."""
    client = as_client(client_or_url)
    export_id = manifest["export_id"]
    ttl = int(manifest["ttl_seconds"])
    total = int(manifest["row_count"])
    codec = SnapshotCodec.from_manifest(manifest)
    index, prefix = index_key(export_id), entity_prefix(export_id)
    _begin_staging(client, manifest)
    stage = client.register_script(lua_script("stage"))
    checksum = Checksum()
    progress = Progress(f"push of export {export_id}:", total, log)
    # One writer thread: Redis stores chunk n while this thread reads and packs chunk n+1.
    # At most two chunks are held at once, whatever the export's size.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-stage") as writer:
        in_flight: Future | None = None
        for entities, packed in packed_chunks(store, manifest, codec, chunk_size):
            checksum.update(entities, packed)
            args = [ttl, prefix, "\n".join(entities), *packed]
            job = writer.submit(stage, keys=[index], args=args)
            if in_flight is not None:
                in_flight.result()
            in_flight = job
            progress.add(len(entities))
        if in_flight is not None:
            in_flight.result()
    seconds = progress.finish()
    problem = None
    if checksum.rows != total:
        problem = f"the files hold {checksum.rows} rows, the manifest says {total}"
    elif checksum.hexdigest() != manifest["checksum"]:
        problem = f"checksum {checksum.hexdigest()} != manifest checksum {manifest['checksum']}"
    if problem:
        client.hset(export_key(export_id), mapping={"status": "failed", "error": problem})
        raise StagingError(
            f"export {export_id} (cutoff {manifest['cutoff']}) at {store.url}/"
            f"{manifest['prefix']} does not match its manifest: {problem}. Re-export the cutoff."
        )
    client.hset(export_key(export_id), mapping={"status": "staged", "staged_at": utc_now()})
    return {
        "export_id": export_id,
        "cutoff": manifest["cutoff"],
        "rows": checksum.rows,
        "chunks": client.llen(index),
        "seconds": round(seconds, 3),
        "rows_per_second": round(checksum.rows / max(seconds, 1e-9)),
    }


def _verify(client: redis.Redis, manifest: dict[str, Any], sample_size: int) -> dict[str, Any]:
    export_id, total = manifest["export_id"], int(manifest["row_count"])
    meta = {decoded(k): decoded(v) for k, v in client.hgetall(export_key(export_id)).items()}
    if not meta:
        raise VerificationFailed(
            f"export {export_id} is not staged in Redis ({export_key(export_id)} is missing); "
            "run push_staged first"
        )
    if meta.get("checksum") != manifest["checksum"]:
        raise VerificationFailed(
            f"export {export_id} was staged from a manifest with checksum {meta.get('checksum')}, "
            f"not {manifest['checksum']}; re-run push_staged with this manifest"
        )
    if meta.get("status") not in ("staged", "verified"):
        reason = meta.get("error") or "its push did not finish"
        raise VerificationFailed(
            f"export {export_id} has status {meta.get('status')!r} in Redis ({reason}); "
            "re-run push_staged"
        )
    prefix, index = entity_prefix(export_id), index_key(export_id)
    checksum = Checksum()
    listed, missing, examples = 0, 0, []
    progress = Progress(f"verify of export {export_id}:", total, log)
    for position in range(client.llen(index)):
        entities = decoded(client.lindex(index, position)).split("\n")
        values = client.mget([prefix + e for e in entities])
        found = [(e, encoded(v)) for e, v in zip(entities, values, strict=True) if v is not None]
        listed += len(entities)
        missing += len(entities) - len(found)
        examples.extend(e for e, v in zip(entities, values, strict=True) if v is None)
        del examples[5:]
        checksum.update([e for e, _ in found], [v for _, v in found])
        progress.add(len(entities))
    progress.finish()
    if listed != total:
        raise VerificationFailed(
            f"export {export_id}: the staging index lists {listed} entities, the manifest "
            f"{total}; re-run push_staged"
        )
    if missing:
        raise VerificationFailed(
            f"export {export_id}: {missing} of {total} staged keys are missing (e.g. {examples}), "
            "expired or deleted; re-run push_staged"
        )
    if checksum.hexdigest() != manifest["checksum"]:
        raise VerificationFailed(
            f"export {export_id}: checksum recomputed from Redis {checksum.hexdigest()} != "
            f"manifest checksum {manifest['checksum']}: staged values were altered; "
            "re-run push_staged"
        )
    sample = manifest.get("parity_sample", [])[:sample_size]
    _check_parity(client, manifest, sample)
    return {
        "export_id": export_id,
        "cutoff": manifest["cutoff"],
        "row_count": total,
        "keys_found": listed - missing,
        "checksum": checksum.hexdigest(),
        "sample_checked": len(sample),
    }


def _check_parity(client: redis.Redis, manifest: dict[str, Any], sample: list[dict]) -> None:
    """Vectors read back through the reader equal the exported rows, and every key has a TTL."""
    export_id = manifest["export_id"]
    entities = [row["entity"] for row in sample]
    ttls = client.pipeline(transaction=False)
    for entity in entities:
        ttls.ttl(entity_prefix(export_id) + entity)
    without_ttl = [e for e, ttl in zip(entities, ttls.execute(), strict=True) if ttl < 0]
    if without_ttl:
        raise VerificationFailed(
            f"export {export_id}: staged keys without a TTL, e.g. {without_ttl[:5]}; "
            "re-run push_staged"
        )
    codec = SnapshotCodec.from_manifest(manifest)
    read = OnlineReader(client).read(entities, export_id=export_id)
    for row, got in zip(sample, read.rows, strict=True):
        expected = codec.decode(row["values"])
        differing = {
            name: (expected[name], got[name])
            for name in expected
            if expected[name] != got[name] or type(expected[name]) is not type(got[name])
        }
        if differing:
            raise VerificationFailed(
                f"export {export_id}: entity {row['entity']} reads back differently from its "
                f"export in {sorted(differing)} (exported, read): {differing}; re-run push_staged"
            )


def verify_staged(
    client: redis.Redis | str, manifest: dict[str, Any], sample_size: int = 200
) -> dict[str, Any]:
    """Check the staged export against its manifest; mark it verified or raise."""
    client = as_client(client)
    key = export_key(manifest["export_id"])
    started = time.monotonic()
    try:
        report = _verify(client, manifest, sample_size)
    except VerificationFailed as exc:
        if client.exists(key):
            client.hset(key, mapping={"status": "failed", "error": str(exc)})
        raise
    client.hset(key, mapping={"status": "verified", "verified_at": utc_now(), "error": ""})
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info("verified export %s: %s", manifest["export_id"], report)
    return report


def switch(client: redis.Redis | str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make the verified export current unless a newer cutoff is current or a rollback is
    pinned; then purge retired snapshots.

    Outcomes: `switched`, `already current`, `skipped: older` (a newer cutoff is current; the
    export is deleted), `skipped: pinned` (a rollback is pinned; the export stays verified
    aside as the pin's pending export until `release`).
    """
    client = as_client(client)
    export_id, cutoff = manifest["export_id"], manifest["cutoff"]
    now = utc_now()
    reply = client.register_script(lua_script("switch"))(
        keys=[
            CURRENT_KEY,
            PREVIOUS_KEY,
            export_key(export_id),
            SWITCHES_KEY,
            RETIRED_KEY,
            POINTER_KEY,
            PIN_KEY,
        ],
        args=[export_id, cutoff, now, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [decoded(item) for item in reply]
    if outcome == "refused":
        raise SnapshotNotVerified(
            f"export {export_id} (cutoff {cutoff}) is not verified in Redis (status: "
            f"{rest[0] or 'not staged'}); run verify_staged before switch"
        )
    before_id, before_cutoff, event_id, pinned = rest
    result = {
        "feature_view": FEATURE_VIEW,
        "action": "switch",
        "outcome": outcome,
        "export_id": export_id,
        "cutoff": cutoff,
        "current_before": {"export_id": before_id, "cutoff": before_cutoff} if before_id else None,
        "at": now,
        "event_id": event_id,
        "purged": purge_retired(client),
    }
    if outcome == "skipped: pinned":
        result["pinned_to"] = pinned
        log.warning(
            "online switch of %s skipped: rollback to export %s is pinned; export %s (cutoff %s) "
            "stays verified aside until `mlpipeline online release`",
            FEATURE_VIEW,
            pinned,
            export_id,
            cutoff,
        )
    log.info("online switch of %s: %s", FEATURE_VIEW, result)
    return result
