"""Online feature store in Redis for the feature view `customer_snapshot`.

A snapshot goes live in three steps, each safe to repeat: `push_staged` writes one export aside
under its export id, `verify_staged` checks it against the export's manifest (count, checksum,
parity sample) and marks it verified, `switch` moves the current pointer to it in one atomic
script. Readers resolve the pointer and fetch the vectors inside one server-side script, so a
reader never sees a mix of two snapshots or a half-written one.

Key layout (every key starts with `fs:customer_snapshot:`):

    <export_id>:<entity>   STRING  the entity's vector: JSON array in manifest column order
                                   (wire format: mlpipeline.export), TTL = manifest ttl_seconds
    index:<export_id>      LIST    per pushed chunk, its entity ids joined by newlines; same TTL;
                                   lets verify and purge walk exactly one export's keys (no SCAN)
    exports:<export_id>    HASH    manifest (JSON, without its parity sample), export_id, cutoff,
                                   row_count, checksum, ttl_seconds, status (staging | staged |
                                   verified | failed), staged_at, verified_at, error; same TTL
                                   until switched in, then kept without TTL
    current                HASH    export_id, cutoff, switched_at of the live snapshot
    previous               HASH    the snapshot `current` replaced, kept for rollback
    retired                SET     export ids whose keys are being deleted (survives a crash)
    switches               STREAM  one entry per switch attempt: outcome, export_id, cutoff,
                                   current_before, cutoff_before, at

The scripts build key names from the pointer, so this needs one Redis server (not Cluster).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow.parquet as pq
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mlpipeline import localredis
from mlpipeline.config import Settings
from mlpipeline.export import (
    FEATURE_VIEW,
    Checksum,
    ExportNotFound,
    Progress,
    SnapshotCodec,
)
from mlpipeline.objectstore import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

PREFIX = f"fs:{FEATURE_VIEW}:"
CURRENT_KEY = PREFIX + "current"
PREVIOUS_KEY = PREFIX + "previous"
RETIRED_KEY = PREFIX + "retired"
SWITCHES_KEY = PREFIX + "switches"
SWITCH_EVENTS_KEPT = 1000
CHUNK_SIZE = 10_000
READER_CODECS_KEPT = 8


def entity_prefix(export_id: str) -> str:
    return f"{PREFIX}{export_id}:"


def export_key(export_id: str) -> str:
    return f"{PREFIX}exports:{export_id}"


def index_key(export_id: str) -> str:
    return f"{PREFIX}index:{export_id}"


class OnlineStoreError(RuntimeError):
    """The online store cannot do what was asked; the message says why and what to do."""


class OnlineStoreUnavailable(OnlineStoreError):
    """Redis cannot be reached."""


class StagingError(OnlineStoreError):
    """The export's files do not match its manifest."""


class VerificationFailed(OnlineStoreError):
    """A staged snapshot differs from its export."""


class SnapshotNotVerified(OnlineStoreError):
    """A switch was asked for an export that has not passed verification."""


class NoCurrentSnapshot(OnlineStoreError):
    """No snapshot has been switched in yet."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def redact(url: str) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def connect(url: str, *, attempts: int = 5, delay: float = 0.5) -> redis.Redis:
    """A client for `url`, once the server answers; retries with backoff, then fails clearly."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=60,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
    )
    attempt = 1
    while True:
        try:
            client.ping()
            return client
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if attempt >= attempts:
                raise OnlineStoreUnavailable(
                    f"cannot reach Redis at {redact(url)} after {attempts} attempts: {exc}. "
                    "Check that the server runs and that REDIS_URL points at it."
                ) from exc
            log.warning(
                "Redis at %s did not answer (attempt %d/%d): %s; retrying in %.1fs",
                redact(url),
                attempt,
                attempts,
                exc,
                delay,
            )
            time.sleep(delay)
            delay *= 2
            attempt += 1


def redis_client(settings: Settings | None = None) -> redis.Redis:
    """Client of the configured Redis (`REDIS_URL`, else the local run's own server)."""
    return connect(localredis.resolve_url(settings or Settings.from_env()))


def as_client(client_or_url: redis.Redis | str) -> redis.Redis:
    return connect(client_or_url) if isinstance(client_or_url, str) else client_or_url


_STAGE = """
-- KEYS[1]: index list
-- ARGV[1]: ttl seconds, ARGV[2]: key prefix of the export, ARGV[3]: entity ids joined by
-- newlines, ARGV[4]: their packed vectors joined by newlines (JSON text holds no raw newline)
local ttl, prefix, ids, vectors = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local i, j, n = 1, 1, 0
while true do
  local id_end = string.find(ids, '\\n', i, true)
  local vector_end = string.find(vectors, '\\n', j, true)
  if (id_end == nil) ~= (vector_end == nil) then
    return redis.error_reply('a staging chunk has different numbers of entity ids and vectors')
  end
  redis.call('SET', prefix .. string.sub(ids, i, (id_end or 0) - 1),
    string.sub(vectors, j, (vector_end or 0) - 1), 'EX', ttl)
  n = n + 1
  if not id_end then
    break
  end
  i, j = id_end + 1, vector_end + 1
end
redis.call('RPUSH', KEYS[1], ids)
redis.call('EXPIRE', KEYS[1], ttl)
return n
"""


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
            "staging_started_at": _now(),
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


def _packed_chunks(
    store: ObjectStore, manifest: dict[str, Any], codec: SnapshotCodec, chunk_size: int
) -> Iterator[tuple[list[str], list[bytes]]]:
    """The export's rows as packed chunks, reading one Parquet file (row group) at a time."""
    columns = [codec.entity_key, *(c.name for c in codec.columns)]
    with tempfile.TemporaryDirectory(prefix="snapshot-push-") as tmp:
        for entry in manifest["files"]:
            path = _download(store, manifest, entry["name"], Path(tmp))
            with pq.ParquetFile(path) as parquet:
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
    stage = client.register_script(_STAGE)
    checksum = Checksum()
    progress = Progress(f"push of export {export_id}:", total, log)
    # One writer thread: Redis stores chunk n while this thread reads and packs chunk n+1.
    # At most two chunks are held at once, whatever the export's size.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-stage") as writer:
        in_flight: Future | None = None
        for entities, packed in _packed_chunks(store, manifest, codec, chunk_size):
            checksum.update(entities, packed)
            args = [ttl, prefix, "\n".join(entities), b"\n".join(packed)]
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
    client.hset(export_key(export_id), mapping={"status": "staged", "staged_at": _now()})
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
    meta = {_text(k): _text(v) for k, v in client.hgetall(export_key(export_id)).items()}
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
        entities = _text(client.lindex(index, position)).split("\n")
        values = client.mget([prefix + e for e in entities])
        found = [(e, _bytes(v)) for e, v in zip(entities, values, strict=True) if v is not None]
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
    sample = manifest["parity_sample"][:sample_size]
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
    client.hset(key, mapping={"status": "verified", "verified_at": _now(), "error": ""})
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info("verified export %s: %s", manifest["export_id"], report)
    return report


_SWITCH = """
-- KEYS: 1 current, 2 previous, 3 exports:<export_id>, 4 switches stream, 5 retired set
-- ARGV: 1 export_id, 2 cutoff (YYYY-MM-DD), 3 time, 4 stream entries kept
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'verified' then
  return {'refused', status or ''}
end
local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'switched_at')
local prev = redis.call('HGET', KEYS[2], 'export_id')
local outcome = 'switched'
if cur[1] == ARGV[1] then
  outcome = 'already current'
elseif cur[2] and cur[2] > ARGV[2] then
  outcome = 'skipped: older'
  if prev ~= ARGV[1] then
    redis.call('SADD', KEYS[5], ARGV[1])
  end
else
  if cur[1] then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], 'export_id', cur[1], 'cutoff', cur[2], 'switched_at', cur[3] or '')
  end
  redis.call('HSET', KEYS[1], 'export_id', ARGV[1], 'cutoff', ARGV[2], 'switched_at', ARGV[3])
  redis.call('PERSIST', KEYS[3])
  if prev and prev ~= ARGV[1] and prev ~= cur[1] then
    redis.call('SADD', KEYS[5], prev)
  end
end
local event = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'outcome', outcome, 'export_id', ARGV[1], 'cutoff', ARGV[2],
  'current_before', cur[1] or '', 'cutoff_before', cur[2] or '', 'at', ARGV[3])
return {outcome, cur[1] or '', cur[2] or '', event}
"""


def switch(client: redis.Redis | str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make the verified export current unless a newer cutoff is; then purge retired snapshots."""
    client = as_client(client)
    export_id, cutoff = manifest["export_id"], manifest["cutoff"]
    now = _now()
    reply = client.register_script(_SWITCH)(
        keys=[CURRENT_KEY, PREVIOUS_KEY, export_key(export_id), SWITCHES_KEY, RETIRED_KEY],
        args=[export_id, cutoff, now, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [_text(item) for item in reply]
    if outcome == "refused":
        raise SnapshotNotVerified(
            f"export {export_id} (cutoff {cutoff}) is not verified in Redis (status: "
            f"{rest[0] or 'not staged'}); run verify_staged before switch"
        )
    before_id, before_cutoff, event_id = rest
    result = {
        "feature_view": FEATURE_VIEW,
        "outcome": outcome,
        "export_id": export_id,
        "cutoff": cutoff,
        "current_before": {"export_id": before_id, "cutoff": before_cutoff} if before_id else None,
        "at": now,
        "event_id": event_id,
        "purged": purge_retired(client),
    }
    log.info("online switch of %s: %s", FEATURE_VIEW, result)
    return result


def purge_retired(client: redis.Redis | str) -> dict[str, int]:
    """Delete retired snapshots' keys in chunks (never the current or previous one)."""
    client = as_client(client)
    purged = {}
    for member in client.smembers(RETIRED_KEY):
        export_id = _text(member)
        live = {_text(client.hget(key, "export_id")) for key in (CURRENT_KEY, PREVIOUS_KEY)}
        if export_id not in live:
            purged[export_id] = _delete_export(client, export_id)
        client.srem(RETIRED_KEY, export_id)
    return purged


def _delete_export(client: redis.Redis, export_id: str) -> int:
    index, prefix = index_key(export_id), entity_prefix(export_id)
    total = int(client.hget(export_key(export_id), "row_count") or 0)
    progress = Progress(f"deletion of retired export {export_id}:", total, log)
    deleted = 0
    while (entry := client.lindex(index, 0)) is not None:
        entities = _text(entry).split("\n")
        pipe = client.pipeline(transaction=True)
        pipe.unlink(*[prefix + e for e in entities])
        pipe.lpop(index)
        deleted += pipe.execute()[0]
        progress.add(len(entities))
    client.unlink(export_key(export_id))
    progress.finish()
    return deleted


_READ = """
-- KEYS[1]: current pointer
-- ARGV[1]: key prefix, ARGV[2]: export id to read instead of the current one ('' = current),
-- ARGV[3]: export id whose manifest the caller already holds, ARGV[4..]: entity ids
local export_id, cutoff
if ARGV[2] ~= '' then
  export_id = ARGV[2]
  cutoff = redis.call('HGET', ARGV[1] .. 'exports:' .. export_id, 'cutoff')
else
  local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff')
  export_id, cutoff = cur[1], cur[2]
end
if not export_id then
  return {false, false, false, {}}
end
local manifest = false
if export_id ~= ARGV[3] then
  manifest = redis.call('HGET', ARGV[1] .. 'exports:' .. export_id, 'manifest')
end
local prefix = ARGV[1] .. export_id .. ':'
local values = {}
for first = 4, #ARGV, 1000 do
  local keys = {}
  for i = first, math.min(first + 999, #ARGV) do
    keys[#keys + 1] = prefix .. ARGV[i]
  end
  local got = redis.call('MGET', unpack(keys))
  for i = 1, #keys do
    values[#values + 1] = got[i]
  end
end
return {export_id, cutoff, manifest, values}
"""


@dataclass(frozen=True)
class SnapshotRead:
    """Vectors of one snapshot, in the order the entities were asked for."""

    export_id: str
    cutoff: str | None
    rows: list[dict[str, Any]]


class OnlineReader:
    """Feature vectors from the current snapshot (or a named export) in one round trip.

    Unknown entities get the manifest's defaults: the same values the training join gives a
    customer absent from the snapshot.
    """

    def __init__(self, client_or_url: redis.Redis | str) -> None:
        self.client = as_client(client_or_url)
        self._script = self.client.register_script(_READ)
        self._codecs: dict[str, tuple[SnapshotCodec, dict[str, Any]]] = {}
        self._current = ""

    def read(self, entities: Iterable[Any], *, export_id: str | None = None) -> SnapshotRead:
        ids = [str(entity) for entity in entities]
        known = export_id if export_id in self._codecs else self._current
        reply = self._script(keys=[CURRENT_KEY], args=[PREFIX, export_id or "", known, *ids])
        found, cutoff, manifest, values = reply
        if found is None:
            raise NoCurrentSnapshot(
                f"no current {FEATURE_VIEW} snapshot in Redis ({CURRENT_KEY} is missing): no "
                "snapshot has been switched in yet; run the nightly's online switch"
            )
        found = _text(found)
        codec, defaults = self._codec(found, manifest)
        if export_id is None:
            self._current = found
        rows = [dict(defaults) if value is None else codec.unpack(value) for value in values]
        return SnapshotRead(found, _text(cutoff), rows)

    def get(self, entity: Any) -> dict[str, Any]:
        return self.read([entity]).rows[0]

    def get_many(self, entities: Iterable[Any]) -> list[dict[str, Any]]:
        return self.read(entities).rows

    def _codec(
        self, export_id: str, manifest: bytes | str | None
    ) -> tuple[SnapshotCodec, dict[str, Any]]:
        if manifest is not None:
            codec = SnapshotCodec.from_manifest(json.loads(manifest))
            self._codecs[export_id] = (codec, codec.defaults())
            while len(self._codecs) > READER_CODECS_KEPT:
                del self._codecs[next(iter(self._codecs))]
        elif export_id not in self._codecs:
            raise OnlineStoreError(
                f"export {export_id} has no manifest in Redis ({export_key(export_id)} is "
                "missing): it was never staged, or was deleted or expired; push it again"
            )
        return self._codecs[export_id]


def current_snapshot(client_or_url: redis.Redis | str) -> dict[str, Any] | None:
    """The current pointer (export id, cutoff, switch time) with its entity count, or None."""
    client = as_client(client_or_url)
    pointer = {_text(k): _text(v) for k, v in client.hgetall(CURRENT_KEY).items()}
    if not pointer:
        return None
    rows = client.hget(export_key(pointer["export_id"]), "row_count")
    return {**pointer, "entities": int(rows) if rows is not None else None}
