"""Operating the store: protected and retired exports, deletion, rollback and release, status."""

from __future__ import annotations

import getpass
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.features.export import (
    FEATURE_VIEW,
    ExportNotFound,
    read_manifest,
)
from mlpipeline.online.connection import as_client
from mlpipeline.online.keys import (
    CURRENT_KEY,
    EVENTS_PREFIX,
    PIN_KEY,
    POINTER_KEY,
    PREVIOUS_KEY,
    SWITCH_EVENTS_KEPT,
    SWITCHES_KEY,
    RollbackRefused,
    VerificationFailed,
    decoded,
    export_key,
    lua_script,
    read_hash,
    utc_now,
)
from mlpipeline.online.reader import current_snapshot
from mlpipeline.online.writer import switch, verify_staged

log = logging.getLogger(__name__)

EVENT_KEY_TIME = "%Y%m%dT%H%M%S%fZ"
EVENT_KEY_MARGIN = timedelta(minutes=10)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


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
    current, previous = read_hash(client, CURRENT_KEY), read_hash(client, PREVIOUS_KEY)
    pin = read_hash(client, PIN_KEY)
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
    now = utc_now()
    reply = client.register_script(lua_script("rollback"))(
        keys=[CURRENT_KEY, PREVIOUS_KEY, POINTER_KEY, PIN_KEY, SWITCHES_KEY],
        args=[current["export_id"], target, now, by or _operator(), reason, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [decoded(item) for item in reply]
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
    now = utc_now()
    reply = client.register_script(lua_script("release"))(
        keys=[PIN_KEY, SWITCHES_KEY, CURRENT_KEY],
        args=[now, by or _operator(), reason, SWITCH_EVENTS_KEPT],
    )
    outcome, *rest = [decoded(item) for item in reply]
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
    """Write a switch, rollback or release record to the object store (one new object each),
    named by the event's time (its `at`, else now) so that the names sort as the events ran."""
    when = _event_time(event["at"]) if event.get("at") else datetime.now(UTC)
    at = when.strftime(EVENT_KEY_TIME)
    key = f"{EVENTS_PREFIX}{at}-{event.get('action', 'switch')}-{event.get('export_id') or 'none'}"
    store.put_bytes(key + ".json", json.dumps(event, default=str, indent=2).encode())
    return key + ".json"


def live_at(store: ObjectStore, moment: datetime) -> dict[str, Any] | None:
    """What was live online at `moment` (UTC), from the recorded events: `export_id`, `cutoff`,
    `at` (when it went live) and `action` (switch, rollback or release) of the last event before
    `moment` that changed the current snapshot; None when none was recorded before it.

    Reads the events newest first from the last one named before `moment` (plus a margin: an
    event recorded by an older build is named by its recording time, just after its `at`)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    newest = (moment + EVENT_KEY_MARGIN).strftime(EVENT_KEY_TIME)
    for key in sorted(store.list(EVENTS_PREFIX), reverse=True):
        if key.removeprefix(EVENTS_PREFIX) >= newest:
            continue
        event = json.loads(store.get_bytes(key))
        made_live = _made_live(event)
        if made_live is not None and _event_time(made_live["at"]) < moment:
            return {**made_live, "action": event.get("action", "switch")}
    return None


def _made_live(event: dict[str, Any]) -> dict[str, Any] | None:
    """The export an event made current (a switch that switched, a rollback, a release that
    switched its pending export), or None."""
    if event.get("action") == "release":
        event = event.get("switch") or {}
    if event.get("outcome") not in {"switched", "rolled back"}:
        return None
    return {name: event[name] for name in ("export_id", "cutoff", "at")}


def _event_time(at: str) -> datetime:
    """An event's `at` (`keys.utc_now`'s form) as an aware UTC time."""
    return datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def status(client_or_url: redis.Redis | str, events: int = 10) -> dict[str, Any]:
    """Current and previous snapshots, the rollback pin (with its pending export), last events."""
    client = as_client(client_or_url)
    return {
        "current": current_snapshot(client),
        "previous": read_hash(client, PREVIOUS_KEY) or None,
        "pin": read_hash(client, PIN_KEY) or None,
        "recent_events": [
            {"id": decoded(event_id), **{decoded(k): decoded(v) for k, v in fields.items()}}
            for event_id, fields in client.xrevrange(SWITCHES_KEY, count=events)
        ],
    }
