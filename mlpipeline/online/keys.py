"""Key names, stored-value helpers and errors of the online store (layout: package docstring)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import redis

from mlpipeline.features.export import (
    EXPORT_ROOT,
    FEATURE_VIEW,
)

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


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decoded(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def encoded(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class RollbackRefused(OnlineStoreError):
    """A rollback cannot be done now; the message says why and what to do."""


def read_hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {decoded(k): decoded(v) for k, v in client.hgetall(key).items()}


@cache
def lua_script(name: str) -> str:
    """The Lua source of scripts/<name>.lua: what runs atomically inside Redis, kept as files a
    reviewer reads with Lua highlighting (and `redis-cli --eval` can run)."""
    return (Path(__file__).parent / "scripts" / f"{name}.lua").read_text()
