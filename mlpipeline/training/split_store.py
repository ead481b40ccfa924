"""Splits persisted: written once under `splits/split_id=<id>/` (manifest last), read back by
every training task, and the training set they are cut from read out of the warehouse."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore
from mlpipeline.training.split import PARTS, PREFIX, Split
from mlpipeline.warehouse.meta import utcnow

log = logging.getLogger(__name__)


MANIFEST = "split.json"


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def persist_split(store: ObjectStore, split: Split) -> str:
    """Write the parts as Parquet plus split.json under `splits/split_id=<id>/`; return the prefix.

    split.json is written last and marks the split complete; a complete split is never
    rewritten (its content is fixed by its id), so re-runs and other readers are safe.
    """
    prefix = split.prefix
    if store.exists(prefix + MANIFEST):
        manifest = json.loads(store.get_bytes(prefix + MANIFEST))
        if all(store.exists(prefix + entry["key"]) for entry in manifest["parts"].values()):
            log.info("split %s already persisted at %s; keeping it", split.split_id, prefix)
            return prefix
    summary = split.summary()
    parts: dict[str, dict[str, Any]] = {}
    for name in PARTS:
        data = _parquet_bytes(split.part(name))
        key = f"{name}.parquet"
        store.put_bytes(prefix + key, data)
        parts[name] = {"key": key, "sha256": hashlib.sha256(data).hexdigest(), **summary[name]}
        log.info(
            "split %s: wrote %s (%d rows, %d bytes)",
            split.split_id,
            key,
            summary[name]["rows"],
            len(data),
        )
    manifest = {
        "split_id": split.split_id,
        "strategy": split.strategy,
        "params": split.params,
        "content_hash": split.content_hash,
        "warnings": split.warnings,
        "parts": parts,
        "created_at": utcnow().isoformat(),
    }
    store.put_bytes(prefix + MANIFEST, json.dumps(manifest, indent=2).encode())
    return prefix


def load_split(store: ObjectStore, split_id: str) -> Split:
    """Read a persisted split back, checking every part against the checksum in split.json."""
    prefix = f"{PREFIX}/split_id={split_id}/"
    try:
        manifest = json.loads(store.get_bytes(prefix + MANIFEST))
    except ObjectNotFound as exc:
        raise FileNotFoundError(
            f"no complete split {split_id} in {store.url} (missing {prefix}{MANIFEST}); "
            "run the split step for this training cutoff first"
        ) from exc
    frames: dict[str, pd.DataFrame] = {}
    for name in PARTS:
        entry = manifest["parts"][name]
        data = store.get_bytes(prefix + entry["key"])
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(
                f"split {split_id}: {prefix}{entry['key']} does not match the checksum in "
                f"{MANIFEST}; the object was altered. Delete {prefix} and re-run the split step."
            )
        frames[name] = pd.read_parquet(io.BytesIO(data))
    return Split(
        split_id=manifest["split_id"],
        strategy=manifest["strategy"],
        params=manifest["params"],
        content_hash=manifest["content_hash"],
        warnings=list(manifest["warnings"]),
        **frames,
    )


def read_training_set(
    con: duckdb.DuckDBPyConnection, training_cutoff: date, *, snapshot: int | None = None
) -> pd.DataFrame:
    """The matured labelled rows dbt built into `marts.training_set` for one training cutoff;
    with `snapshot`, as the warehouse held them then (a model version's `warehouse_snapshot`)."""
    at = f" AT (VERSION => {int(snapshot)})" if snapshot is not None else ""
    try:
        frame = con.execute(
            f"SELECT * FROM marts.training_set{at} WHERE training_cutoff = ? "
            "ORDER BY transaction_id",
            [training_cutoff],
        ).df()
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            f"marts.training_set does not exist in the warehouse ({exc}); run the dbt build "
            f"(mlpipeline.features.transform.build) for {training_cutoff} first"
        ) from exc
    if frame.empty:
        built = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT training_cutoff FROM marts.training_set"
            ).fetchall()
        ]
        if built:
            raise RuntimeError(
                f"marts.training_set was built for training cutoff(s) {built}, not "
                f"{training_cutoff}; rebuild it with dbt var training_cutoff={training_cutoff}"
            )
    log.info("training set for cutoff %s: %d rows", training_cutoff, len(frame))
    return frame
