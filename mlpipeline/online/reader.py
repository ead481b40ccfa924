"""Reading vectors of the live snapshot: one MGET, never a mix of two snapshots."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from mlpipeline.features.export import FEATURE_VIEW
from mlpipeline.features.wire_format import SnapshotCodec
from mlpipeline.online.connection import as_client
from mlpipeline.online.keys import (
    CURRENT_KEY,
    PIN_KEY,
    POINTER_KEY,
    READ_ATTEMPTS,
    READER_CODECS_KEPT,
    NoCurrentSnapshot,
    OnlineStoreError,
    decoded,
    entity_prefix,
    export_key,
    read_hash,
)


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
            found = decoded(reply[0])
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
        found = decoded(self.client.get(POINTER_KEY))
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
    pointer = read_hash(client, CURRENT_KEY)
    if not pointer:
        return None
    rows = client.hget(export_key(pointer["export_id"]), "row_count")
    pin = read_hash(client, PIN_KEY)
    return {
        **pointer,
        "entities": int(rows) if rows is not None else None,
        "pinned": bool(pin) and pin.get("export_id") == pointer["export_id"],
    }
