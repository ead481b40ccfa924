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
`features/customer_snapshot/switches/`, one object each named by the event's time: the history
monitoring reads what was live at a day's end from (`live_at`). The scripts and the reader's
MGET touch keys of several hash slots, so this needs one Redis server (or a primary with
replicas), not Cluster.
"""

from mlpipeline.online.admin import live_at, record_event, release, rollback, status
from mlpipeline.online.connection import as_client, connect, redact, redis_client
from mlpipeline.online.exports import (
    delete_snapshot,
    protected_exports,
    purge_retired,
    retired_exports,
    snapshot_exports,
)
from mlpipeline.online.keys import (
    CHUNK_SIZE,
    CURRENT_KEY,
    EVENTS_PREFIX,
    PIN_KEY,
    POINTER_KEY,
    PREFIX,
    PREVIOUS_KEY,
    READ_ATTEMPTS,
    READER_CODECS_KEPT,
    RETIRED_KEY,
    SWITCH_EVENTS_KEPT,
    SWITCHES_KEY,
    NoCurrentSnapshot,
    OnlineStoreError,
    OnlineStoreUnavailable,
    RollbackRefused,
    SnapshotNotVerified,
    StagingError,
    VerificationFailed,
    entity_prefix,
    export_key,
    index_key,
)
from mlpipeline.online.reader import OnlineReader, SnapshotRead, current_snapshot
from mlpipeline.online.writer import push_staged, switch, verify_staged

__all__ = [
    "CHUNK_SIZE",
    "CURRENT_KEY",
    "EVENTS_PREFIX",
    "NoCurrentSnapshot",
    "OnlineReader",
    "OnlineStoreError",
    "OnlineStoreUnavailable",
    "PIN_KEY",
    "POINTER_KEY",
    "PREFIX",
    "PREVIOUS_KEY",
    "READER_CODECS_KEPT",
    "READ_ATTEMPTS",
    "RETIRED_KEY",
    "RollbackRefused",
    "SWITCHES_KEY",
    "SWITCH_EVENTS_KEPT",
    "SnapshotNotVerified",
    "SnapshotRead",
    "StagingError",
    "VerificationFailed",
    "as_client",
    "connect",
    "current_snapshot",
    "delete_snapshot",
    "entity_prefix",
    "export_key",
    "index_key",
    "live_at",
    "protected_exports",
    "purge_retired",
    "push_staged",
    "record_event",
    "redact",
    "redis_client",
    "release",
    "retired_exports",
    "rollback",
    "snapshot_exports",
    "status",
    "switch",
    "verify_staged",
]
