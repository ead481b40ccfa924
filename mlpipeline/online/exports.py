"""Exports the store must keep (current, previous, pinned, pending), and deleting the rest."""

from __future__ import annotations

import logging

import redis

from mlpipeline.core.progress import Progress
from mlpipeline.online.connection import as_client
from mlpipeline.online.keys import (
    CURRENT_KEY,
    PIN_KEY,
    PREVIOUS_KEY,
    RETIRED_KEY,
    OnlineStoreError,
    decoded,
    entity_prefix,
    export_key,
    index_key,
    read_hash,
)

log = logging.getLogger(__name__)


def live_exports(client: redis.Redis) -> set[str | None]:
    """Exports that must not be deleted: current, previous and a pin's pending export."""
    pipe = client.pipeline(transaction=True)
    pipe.hget(CURRENT_KEY, "export_id")
    pipe.hget(PREVIOUS_KEY, "export_id")
    pipe.hget(PIN_KEY, "pending_export_id")
    return {decoded(value) for value in pipe.execute()}


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
        decoded(value): reason
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
            export_id = decoded(key).removeprefix(head)
            if export_id not in found:
                found[export_id] = read_hash(client, export_key(export_id))
    return found


def retired_exports(client_or_url: redis.Redis | str) -> set[str]:
    """Exports a switch retired whose keys are still being deleted."""
    return {decoded(member) for member in as_client(client_or_url).smembers(RETIRED_KEY)}


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
        export_id = decoded(member)
        if export_id not in live_exports(client):
            purged[export_id] = _delete_export(client, export_id)
        client.srem(RETIRED_KEY, export_id)
    return purged


def _delete_export(client: redis.Redis, export_id: str) -> int:
    index, prefix = index_key(export_id), entity_prefix(export_id)
    total = int(client.hget(export_key(export_id), "row_count") or 0)
    progress = Progress(f"deletion of retired export {export_id}:", total, log)
    deleted = 0
    while (entry := client.lindex(index, 0)) is not None:
        entities = decoded(entry).split("\n")
        pipe = client.pipeline(transaction=True)
        pipe.unlink(*[prefix + e for e in entities])
        pipe.lpop(index)
        deleted += pipe.execute()[0]
        progress.add(len(entities))
    client.unlink(export_key(export_id))
    progress.finish()
    return deleted
