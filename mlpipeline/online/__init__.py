"""Online feature store in Redis for the feature view `customer_snapshot`.

A snapshot goes live in three steps, each safe to repeat: `push_staged` writes one export aside
under its export id, `verify_staged` checks it against the export's manifest (count, checksum,
parity sample) and marks it verified, `switch` moves the current pointer to it in one atomic
script (a compare-and-set on the cutoff). A reader fetches the current-export key and the
entities' keys in one MGET, so it never sees a mix of two snapshots or a half-written one.
`rollback` makes the previous snapshot current and pins it: switches are skipped (the newest
verified export waits aside as "pending") until `release`.

Key layout (every key starts with `fs:customer_snapshot:`):

    <export_id>:<entity>   STRING  the entity's vector: MessagePack array in manifest column order
                                   (wire format: features.export), TTL = manifest ttl_seconds
    index:<export_id>      LIST    per pushed chunk, its entity ids joined by newlines; same TTL;
                                   lets verify and purge walk exactly one export's keys (no SCAN)
    exports:<export_id>    HASH    manifest (JSON, without its parity sample), export_id, cutoff,
                                   row_count, checksum, ttl_seconds, status (staging | staged |
                                   verified | failed), staged_at, verified_at, error; same TTL
                                   until switched in, then kept without TTL
    current_export_id      STRING  export id of the live snapshot (what readers MGET first)
    current                HASH    export_id, cutoff, switched_at of the live snapshot
    previous               HASH    the snapshot `current` replaced, kept for rollback
                                   (rolled_back_at when a rollback replaced it)
    pin                    HASH    present while a rollback is pinned: export_id, cutoff,
                                   pinned_at, by, reason, rolled_back_from(_cutoff),
                                   pending_export_id, pending_cutoff
    retired                SET     export ids whose keys are being deleted (survives a crash)
    switches               STREAM  one entry per switch attempt, rollback and release: outcome,
                                   export_id, cutoff, current_before, cutoff_before, at (by,
                                   reason)

Switch, rollback and release records also go to the object store under
`features/customer_snapshot/switches/`. The scripts and the reader's MGET touch keys of several
hash slots, so this needs one Redis server (or a primary with replicas), not Cluster.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
import threading
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

from mlpipeline.core.config import ConfigurationError, Settings
from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore
from mlpipeline.features.export import (
    EXPORT_ROOT,
    FEATURE_VIEW,
    Checksum,
    ExportNotFound,
    Progress,
    SnapshotCodec,
    read_manifest,
)

log = logging.getLogger(__name__)

PREFIX = f"fs:{FEATURE_VIEW}:"
CURRENT_KEY = PREFIX + "current"
PREVIOUS_KEY = PREFIX + "previous"
RETIRED_KEY = PREFIX + "retired"
SWITCHES_KEY = PREFIX + "switches"
POINTER_KEY = PREFIX + "current_export_id"
PIN_KEY = PREFIX + "pin"
EVENTS_PREFIX = f"{EXPORT_ROOT}/switches/"
READ_ATTEMPTS = 5
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
        except redis.AuthenticationError as exc:  # no use retrying
            raise OnlineStoreUnavailable(
                f"Redis at {redact(url)} refused the credentials: {exc}. Check the user and "
                "password in REDIS_URL."
            ) from exc
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


def redis_client(settings_or_url: Settings | str | None = None) -> redis.Redis:
    """Client of a Redis URL, or of the configured one (`REDIS_URL`). URLs:
    `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS (e.g.
    `?ssl_ca_certs=/path/ca.pem`, `?ssl_cert_reqs=none`), `unix:///path.sock?db=N`.

    The library never starts a server: a missing URL is a configuration error, so a deployment
    that forgot `REDIS_URL` fails at once instead of writing features nobody serves."""
    if isinstance(settings_or_url, str):
        return connect(settings_or_url)
    url = (settings_or_url or Settings.from_env()).redis_url
    if not url:
        raise ConfigurationError(
            "REDIS_URL is not set: the online store needs the URL of its Redis "
            "(redis://host:port/db). On a laptop, `make demo` and `make ui` start a local one, "
            "which the `mlpipeline online` and `serve` commands find by themselves."
        )
    return connect(url)


def as_client(client_or_url: redis.Redis | str) -> redis.Redis:
    return connect(client_or_url) if isinstance(client_or_url, str) else client_or_url


_STAGE = """
-- KEYS[1]: index list
-- ARGV[1]: ttl seconds, ARGV[2]: key prefix of the export, ARGV[3]: entity ids joined by
-- newlines (an entity id holds no newline; the export checks), ARGV[4..]: their packed vectors
local ttl, prefix, ids = ARGV[1], ARGV[2], ARGV[3]
local i, n = 1, 0
while true do
  local id_end = string.find(ids, '\\n', i, true)
  n = n + 1
  local vector = ARGV[3 + n]
  if not vector then
    return redis.error_reply('a staging chunk has more entity ids than vectors')
  end
  redis.call('SET', prefix .. string.sub(ids, i, (id_end or 0) - 1), vector, 'EX', ttl)
  if not id_end then
    break
  end
  i = id_end + 1
end
if n ~= #ARGV - 3 then
  return redis.error_reply('a staging chunk has more vectors than entity ids')
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
    stage = client.register_script(_STAGE)
    checksum = Checksum()
    progress = Progress(f"push of export {export_id}:", total, log)
    # One writer thread: Redis stores chunk n while this thread reads and packs chunk n+1.
    # At most two chunks are held at once, whatever the export's size.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-stage") as writer:
        in_flight: Future | None = None
        for entities, packed in _packed_chunks(store, manifest, codec, chunk_size):
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
    client.hset(key, mapping={"status": "verified", "verified_at": _now(), "error": ""})
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info("verified export %s: %s", manifest["export_id"], report)
    return report


_SWITCH = """
-- KEYS: 1 current, 2 previous, 3 exports:<export_id>, 4 switches stream, 5 retired set,
--       6 current export id (string), 7 pin
-- ARGV: 1 export_id, 2 cutoff (YYYY-MM-DD), 3 time, 4 stream entries kept
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'verified' then
  return {'refused', status or ''}
end
local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'switched_at')
local prev = redis.call('HGET', KEYS[2], 'export_id')
local pin = redis.call('HMGET', KEYS[7], 'export_id', 'pending_export_id')
local outcome = 'switched'
if cur[1] == ARGV[1] then
  outcome = 'already current'
  redis.call('PERSIST', KEYS[3])
elseif pin[1] then
  -- A rollback is pinned: keep this verified export aside until release (one at most).
  outcome = 'skipped: pinned'
  if pin[2] and pin[2] ~= ARGV[1] and pin[2] ~= cur[1] and pin[2] ~= prev then
    redis.call('SADD', KEYS[5], pin[2])
  end
  redis.call('HSET', KEYS[7], 'pending_export_id', ARGV[1], 'pending_cutoff', ARGV[2])
elseif cur[2] and cur[2] > ARGV[2] then
  outcome = 'skipped: older'
  if prev ~= ARGV[1] then
    redis.call('SADD', KEYS[5], ARGV[1])
  end
else
  if cur[2] == ARGV[2] and prev then
    -- A re-run of the current cutoff: the rollback target stays the previous cutoff's
    -- snapshot, and the export it replaces retires.
    redis.call('SADD', KEYS[5], cur[1])
  else
    if cur[1] then
      redis.call('DEL', KEYS[2])
      redis.call('HSET', KEYS[2], 'export_id', cur[1], 'cutoff', cur[2],
        'switched_at', cur[3] or '')
    end
    if prev and prev ~= ARGV[1] and prev ~= cur[1] then
      redis.call('SADD', KEYS[5], prev)
    end
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'export_id', ARGV[1], 'cutoff', ARGV[2], 'switched_at', ARGV[3])
  redis.call('SET', KEYS[6], ARGV[1])
  redis.call('PERSIST', KEYS[3])
end
local event = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'outcome', outcome, 'export_id', ARGV[1], 'cutoff', ARGV[2],
  'current_before', cur[1] or '', 'cutoff_before', cur[2] or '', 'at', ARGV[3])
return {outcome, cur[1] or '', cur[2] or '', event, pin[1] or ''}
"""


def switch(client: redis.Redis | str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make the verified export current unless a newer cutoff is current or a rollback is
    pinned; then purge retired snapshots.

    Outcomes: `switched`, `already current`, `skipped: older` (a newer cutoff is current; the
    export is deleted), `skipped: pinned` (a rollback is pinned; the export stays verified
    aside as the pin's pending export until `release`).
    """
    client = as_client(client)
    export_id, cutoff = manifest["export_id"], manifest["cutoff"]
    now = _now()
    reply = client.register_script(_SWITCH)(
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
    outcome, *rest = [_text(item) for item in reply]
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


def _live_exports(client: redis.Redis) -> set[str | None]:
    """Exports that must not be deleted: current, previous and a pin's pending export."""
    pipe = client.pipeline(transaction=True)
    pipe.hget(CURRENT_KEY, "export_id")
    pipe.hget(PREVIOUS_KEY, "export_id")
    pipe.hget(PIN_KEY, "pending_export_id")
    return {_text(value) for value in pipe.execute()}


def protected_exports(client_or_url: redis.Redis | str) -> dict[str, str]:
    """Exports nothing may delete, with the reason: the current one, the previous one (the
    rollback target), the pinned one and a pin's pending export."""
    client = as_client(client_or_url)
    pipe = client.pipeline(transaction=True)
    pipe.hget(PIN_KEY, "pending_export_id")
    pipe.hget(PIN_KEY, "export_id")
    pipe.hget(PREVIOUS_KEY, "export_id")
    pipe.hget(CURRENT_KEY, "export_id")
    reasons = ("pending export of the pin", "pinned", "previous (rollback target)", "current")
    # Later entries win: an export that is current and pinned is reported as current.
    return {
        _text(value): reason
        for value, reason in zip(pipe.execute(), reasons, strict=True)
        if value is not None
    }


def snapshot_exports(client_or_url: redis.Redis | str) -> dict[str, dict[str, str]]:
    """Every export Redis holds a record or an index of: export id -> its record (status,
    staged_at, ...; empty when only the index is left). Walks the small per-export keys with
    SCAN, never the entity keys' namespace as a whole."""
    client = as_client(client_or_url)
    found: dict[str, dict[str, str]] = {}
    for pattern, key_of in ((export_key("*"), export_key), (index_key("*"), index_key)):
        head = key_of("")
        for key in client.scan_iter(match=pattern, count=1000):
            export_id = _text(key).removeprefix(head)
            if export_id not in found:
                found[export_id] = _hash(client, export_key(export_id))
    return found


def retired_exports(client_or_url: redis.Redis | str) -> set[str]:
    """Exports a switch retired whose keys are still being deleted."""
    return {_text(member) for member in as_client(client_or_url).smembers(RETIRED_KEY)}


def delete_snapshot(client_or_url: redis.Redis | str, export_id: str) -> int:
    """Delete one export's keys in chunks, unless it is protected (checked right before);
    returns the number of entity keys deleted."""
    client = as_client(client_or_url)
    if export_id in protected_exports(client):
        raise OnlineStoreError(
            f"export {export_id} is current, previous or pinned in Redis; it cannot be deleted"
        )
    deleted = _delete_export(client, export_id)
    client.srem(RETIRED_KEY, export_id)
    return deleted


def purge_retired(client: redis.Redis | str) -> dict[str, int]:
    """Delete retired snapshots' keys in chunks (never the current, previous or pending one)."""
    client = as_client(client)
    purged = {}
    for member in client.smembers(RETIRED_KEY):
        export_id = _text(member)
        if export_id not in _live_exports(client):
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


# --- rollback ----------------------------------------------------------------------------------

_ROLLBACK = """
-- KEYS: 1 current, 2 previous, 3 current export id (string), 4 pin, 5 switches stream
-- ARGV: 1 current export id seen by the caller, 2 previous export id seen by the caller,
--       3 time, 4 by, 5 reason, 6 stream entries kept
local pinned = redis.call('HMGET', KEYS[4], 'export_id', 'pinned_at')
if pinned[1] then
  return {'pinned', pinned[1], pinned[2] or ''}
end
local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'switched_at')
local prev = redis.call('HMGET', KEYS[2], 'export_id', 'cutoff', 'switched_at', 'rolled_back_at')
if not cur[1] or not prev[1] then
  return {'nothing to roll back to', cur[1] or '', prev[1] or ''}
end
if cur[1] ~= ARGV[1] or prev[1] ~= ARGV[2] then
  return {'changed', cur[1], prev[1]}
end
if prev[4] then
  return {'previous was rolled back', prev[1], prev[4]}
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'export_id', prev[1], 'cutoff', prev[2], 'switched_at', ARGV[3])
redis.call('SET', KEYS[3], prev[1])
redis.call('HSET', KEYS[2], 'export_id', cur[1], 'cutoff', cur[2], 'switched_at', cur[3] or '',
  'rolled_back_at', ARGV[3])
redis.call('HSET', KEYS[4], 'export_id', prev[1], 'cutoff', prev[2], 'pinned_at', ARGV[3],
  'by', ARGV[4], 'reason', ARGV[5], 'rolled_back_from', cur[1], 'rolled_back_from_cutoff', cur[2])
local event = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*',
  'outcome', 'rolled back', 'export_id', prev[1], 'cutoff', prev[2],
  'current_before', cur[1], 'cutoff_before', cur[2], 'at', ARGV[3], 'by', ARGV[4],
  'reason', ARGV[5])
return {'rolled back', prev[1], prev[2], cur[1], cur[2], event}
"""

_RELEASE = """
-- KEYS: 1 pin, 2 switches stream, 3 current
-- ARGV: 1 time, 2 by, 3 reason, 4 stream entries kept
local pin = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'pending_export_id',
  'pending_cutoff', 'pinned_at')
if not pin[1] then
  return {'not pinned'}
end
redis.call('DEL', KEYS[1])
local cur = redis.call('HMGET', KEYS[3], 'export_id', 'cutoff')
local event = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'outcome', 'released', 'export_id', cur[1] or '', 'cutoff', cur[2] or '',
  'pinned_export_id', pin[1], 'pending_export_id', pin[3] or '', 'at', ARGV[1], 'by', ARGV[2],
  'reason', ARGV[3])
return {'released', pin[1], pin[2], pin[3] or '', pin[4] or '', pin[5] or '', event}
"""


class RollbackRefused(OnlineStoreError):
    """A rollback cannot be done now; the message says why and what to do."""


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(key).items()}


def _stored_manifest(
    client: redis.Redis, export_id: str, store: ObjectStore | None
) -> dict[str, Any]:
    """An export's manifest: from the object store when given (it holds the parity sample),
    else the summary kept in Redis."""
    summary = client.hget(export_key(export_id), "manifest")
    if summary is None:
        raise RollbackRefused(
            f"export {export_id} has no manifest in Redis ({export_key(export_id)} is missing): "
            "its snapshot is gone; nothing to roll back to"
        )
    manifest = json.loads(summary)
    if store is not None:
        try:
            manifest = read_manifest(store, manifest["prefix"])
        except ExportNotFound:
            log.warning(
                "manifest of export %s is missing from %s; checking against Redis' copy",
                export_id,
                store.url,
            )
    return manifest


def rollback(
    client_or_url: redis.Redis | str,
    store: ObjectStore | None = None,
    *,
    reason: str = "",
    by: str | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Make the previous snapshot current and pin it: switches are skipped until `release`.

    The previous snapshot is first re-checked in Redis (count, checksum, parity sample) so a
    rollback never serves one whose keys expired or were deleted. The rollback is recorded in
    the switches stream and, when `store` is given, in the object store.
    """
    client = as_client(client_or_url)
    current, previous = _hash(client, CURRENT_KEY), _hash(client, PREVIOUS_KEY)
    pin = _hash(client, PIN_KEY)
    if pin:
        raise RollbackRefused(
            f"a rollback to export {pin['export_id']} (cutoff {pin['cutoff']}) is already pinned "
            f"since {pin['pinned_at']} by {pin.get('by')}; run `mlpipeline online release` first"
        )
    if not current or not previous:
        raise RollbackRefused(
            "no previous snapshot in Redis to roll back to (current: "
            f"{current.get('export_id') or 'none'}, previous: none); only the snapshot replaced "
            "by the last switch is kept for rollback"
        )
    if previous.get("rolled_back_at"):
        raise RollbackRefused(
            f"the previous snapshot {previous['export_id']} (cutoff {previous['cutoff']}) is the "
            f"one rolled back from at {previous['rolled_back_at']}; to serve it again, re-run the "
            "nightly's switch (or `release --switch-pending`), not a rollback"
        )
    target = previous["export_id"]
    if verify:
        try:
            verify_staged(client, _stored_manifest(client, target, store))
        except VerificationFailed as exc:
            raise RollbackRefused(
                f"the previous snapshot {target} (cutoff {previous['cutoff']}) is no longer whole "
                f"in Redis, so it cannot be served: {exc}"
            ) from exc
    now = _now()
    reply = client.register_script(_ROLLBACK)(
        keys=[CURRENT_KEY, PREVIOUS_KEY, POINTER_KEY, PIN_KEY, SWITCHES_KEY],
        args=[current["export_id"], target, now, by or _operator(), reason, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [_text(item) for item in reply]
    if outcome != "rolled back":
        raise RollbackRefused(
            f"rollback refused ({outcome}: {rest}); the current or previous snapshot changed "
            "while it was being prepared. Check `mlpipeline online status` and retry."
        )
    export_id, cutoff, from_id, from_cutoff, event_id = rest
    result = {
        "feature_view": FEATURE_VIEW,
        "action": "rollback",
        "outcome": outcome,
        "export_id": export_id,
        "cutoff": cutoff,
        "current_before": {"export_id": from_id, "cutoff": from_cutoff},
        "pinned": True,
        "by": by or _operator(),
        "reason": reason,
        "verified": verify,
        "at": now,
        "event_id": event_id,
    }
    log.warning("online rollback of %s: %s", FEATURE_VIEW, result)
    if store is not None:
        record_event(store, result)
    return result


def release(
    client_or_url: redis.Redis | str,
    store: ObjectStore | None = None,
    *,
    switch_pending: bool = False,
    reason: str = "",
    by: str | None = None,
) -> dict[str, Any]:
    """Remove the rollback pin; the next switch moves forward again by the cutoff rule.

    The current snapshot stays as it is. With `switch_pending`, the newest verified export a
    switch kept aside while pinned is switched in at once (same compare-and-set as the nightly).
    """
    client = as_client(client_or_url)
    now = _now()
    reply = client.register_script(_RELEASE)(
        keys=[PIN_KEY, SWITCHES_KEY, CURRENT_KEY],
        args=[now, by or _operator(), reason, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [_text(item) for item in reply]
    result: dict[str, Any] = {
        "feature_view": FEATURE_VIEW,
        "action": "release",
        "outcome": outcome,
        "by": by or _operator(),
        "reason": reason,
        "at": now,
    }
    if outcome == "released":
        pinned_id, pinned_cutoff, pending_id, pending_cutoff, pinned_at, event_id = rest
        result.update(
            export_id=pinned_id,
            cutoff=pinned_cutoff,
            pinned={"export_id": pinned_id, "cutoff": pinned_cutoff, "pinned_at": pinned_at},
            pending={"export_id": pending_id, "cutoff": pending_cutoff} if pending_id else None,
            event_id=event_id,
        )
        if switch_pending and pending_id:
            result["switch"] = switch(client, {"export_id": pending_id, "cutoff": pending_cutoff})
    log.info("online release of %s: %s", FEATURE_VIEW, result)
    if store is not None and outcome == "released":
        record_event(store, result)
    return result


def record_event(store: ObjectStore, event: dict[str, Any]) -> str:
    """Write a switch, rollback or release record to the object store (one new object each)."""
    at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{EVENTS_PREFIX}{at}-{event.get('action', 'switch')}-{event.get('export_id') or 'none'}"
    store.put_bytes(key + ".json", json.dumps(event, default=str, indent=2).encode())
    return key + ".json"


def status(client_or_url: redis.Redis | str, events: int = 10) -> dict[str, Any]:
    """Current and previous snapshots, the rollback pin (with its pending export), last events."""
    client = as_client(client_or_url)
    return {
        "current": current_snapshot(client),
        "previous": _hash(client, PREVIOUS_KEY) or None,
        "pin": _hash(client, PIN_KEY) or None,
        "recent_events": [
            {"id": _text(event_id), **{_text(k): _text(v) for k, v in fields.items()}}
            for event_id, fields in client.xrevrange(SWITCHES_KEY, count=events)
        ],
    }


# --- reads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRead:
    """Vectors of one snapshot, in the order the entities were asked for; `known[i]` is False
    where entity i is not in the snapshot and got the manifest's defaults."""

    export_id: str
    cutoff: str | None
    rows: list[dict[str, Any]]
    known: list[bool]


@dataclass(frozen=True)
class _Codec:
    codec: SnapshotCodec
    defaults: dict[str, Any]
    cutoff: str | None
    prefix: str


class OnlineReader:
    """Feature vectors from the current snapshot (or a named export) in one round trip.

    The reader remembers which export is current and reads with one MGET of the current-export
    key plus the entities' keys: one atomic command, so the vectors all come from the export
    that was current at that instant. When the first value names another export (a switch
    happened), the reader loads that export's manifest and reads again. Unknown entities get the
    manifest's defaults: the same values the training join gives a customer absent from the
    snapshot. Safe to share between threads.
    """

    def __init__(self, client_or_url: redis.Redis | str) -> None:
        self.client = as_client(client_or_url)
        if self.client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "OnlineReader needs a client with decode_responses=False: vectors are binary "
                "MessagePack"
            )
        self._codecs: dict[str, _Codec] = {}
        self._lock = threading.Lock()
        self._current: str | None = None

    def read(self, entities: Iterable[Any], *, export_id: str | None = None) -> SnapshotRead:
        ids = [str(entity) for entity in entities]
        if export_id is not None:
            codec = self._codec(export_id)
            values = self.client.mget([codec.prefix + i for i in ids]) if ids else []
            return self._decoded(export_id, codec, values)
        current = self._current
        for _ in range(READ_ATTEMPTS):
            if current is None:
                current = self._resolve()
            try:
                codec = self._codec(current)
            except OnlineStoreError:  # deleted since it was current: where is the pointer now?
                if self._resolve() == current:
                    raise
                current = self._current
                continue
            prefix = codec.prefix
            reply = self.client.execute_command("MGET", POINTER_KEY, *[prefix + i for i in ids])
            found = _text(reply[0])
            if found == current:
                return self._decoded(current, codec, reply[1:])
            if found is None:
                self._current = None
                raise self._no_current()
            current = self._current = found  # switched since the last read: read that one
        raise OnlineStoreError(
            f"the current {FEATURE_VIEW} snapshot changed {READ_ATTEMPTS} times during one read; "
            "is something switching snapshots in a loop?"
        )

    def get(self, entity: Any) -> dict[str, Any]:
        return self.read([entity]).rows[0]

    def get_many(self, entities: Iterable[Any]) -> list[dict[str, Any]]:
        return self.read(entities).rows

    def _decoded(self, export_id: str, codec: _Codec, values: list[Any]) -> SnapshotRead:
        rows = codec.codec.unpack_many(values, codec.defaults)
        return SnapshotRead(export_id, codec.cutoff, rows, [v is not None for v in values])

    @staticmethod
    def _no_current() -> NoCurrentSnapshot:
        return NoCurrentSnapshot(
            f"no current {FEATURE_VIEW} snapshot in Redis ({POINTER_KEY} is missing): no "
            "snapshot has been switched in yet; run the nightly's online switch"
        )

    def _resolve(self) -> str:
        found = _text(self.client.get(POINTER_KEY))
        if found is None:
            raise self._no_current()
        self._current = found
        return found

    def _codec(self, export_id: str) -> _Codec:
        cached = self._codecs.get(export_id)
        if cached is not None:
            return cached
        manifest = self.client.hget(export_key(export_id), "manifest")
        if manifest is None:
            raise OnlineStoreError(
                f"export {export_id} has no manifest in Redis ({export_key(export_id)} is "
                "missing): it was never staged, or was deleted or expired; push it again"
            )
        parsed = json.loads(manifest)
        codec = SnapshotCodec.from_manifest(parsed)
        entry = _Codec(codec, codec.defaults(), parsed.get("cutoff"), entity_prefix(export_id))
        with self._lock:
            self._codecs[export_id] = entry
            while len(self._codecs) > READER_CODECS_KEPT:
                del self._codecs[next(iter(self._codecs))]
        return entry


def current_snapshot(client_or_url: redis.Redis | str) -> dict[str, Any] | None:
    """The current pointer (export id, cutoff, switch time) with its entity count and the
    rollback pin if any, or None."""
    client = as_client(client_or_url)
    pointer = _hash(client, CURRENT_KEY)
    if not pointer:
        return None
    rows = client.hget(export_key(pointer["export_id"]), "row_count")
    pin = _hash(client, PIN_KEY)
    return {
        **pointer,
        "entities": int(rows) if rows is not None else None,
        "pinned": bool(pin) and pin.get("export_id") == pointer["export_id"],
    }
