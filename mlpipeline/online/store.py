"""The online store as one seam: what the pipeline and the serving side may ask of it.

Like Feast's `OnlineStore`, the interface is a handful of verbs; unlike it, writing is staged:
a snapshot is written aside, verified against its export's manifest, then switched in
atomically, so readers never see a half-written or mixed snapshot. `RedisOnlineStore` is the
implementation; another backend implements the same four verbs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import redis

from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore, from_settings
from mlpipeline.online import admin, writer
from mlpipeline.online.connection import redis_client
from mlpipeline.online.reader import OnlineReader, SnapshotRead


class OnlineStore(ABC):
    """Write aside, verify, switch in, read: each safe to repeat."""

    @abstractmethod
    def write(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Stage the export `manifest` names beside the live snapshot."""

    @abstractmethod
    def verify(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Check the staged export against its manifest; raise if it differs."""

    @abstractmethod
    def switch(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Make the verified export the live snapshot (never an older cutoff)."""

    @abstractmethod
    def read(self, entities: Iterable[Any], *, export_id: str | None = None) -> SnapshotRead:
        """Vectors of the live snapshot (or of `export_id`), defaults for unknown entities."""


class RedisOnlineStore(OnlineStore):
    """The online store in one Redis server; exports are read from the object store."""

    def __init__(self, client: redis.Redis, objects: ObjectStore) -> None:
        self.client = client
        self.objects = objects

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisOnlineStore:
        """The configured store (`REDIS_URL`, the object store); a missing URL is an error."""
        return cls(redis_client(settings), from_settings(settings))

    def write(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return writer.push_staged(self.client, self.objects, manifest)

    def verify(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return writer.verify_staged(self.client, manifest)

    def switch(self, manifest: dict[str, Any]) -> dict[str, Any]:
        result = writer.switch(self.client, manifest)
        admin.record_event(self.objects, result)
        return result

    def read(self, entities: Iterable[Any], *, export_id: str | None = None) -> SnapshotRead:
        return OnlineReader(self.client).read(entities, export_id=export_id)

    def rollback(self, *, reason: str, verify: bool = True) -> dict[str, Any]:
        return admin.rollback(self.client, self.objects, reason=reason, verify=verify)

    def release(self, *, switch_pending: bool, reason: str) -> dict[str, Any]:
        return admin.release(
            self.client, self.objects, switch_pending=switch_pending, reason=reason
        )

    def status(self) -> dict[str, Any]:
        return admin.status(self.client)
