"""The landing-zone contract: where producers drop a day's files and how they finish it.

A producer writes its files under `landing/{dataset}/dt=YYYY-MM-DD/` and finishes the day with a
`_SUCCESS` object listing every file and its row count; a day with no data lists no files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore

DATASETS = ("transactions", "chargebacks")
DATA_SUFFIXES = (".csv", ".parquet")


class LandingNotReady(RuntimeError):
    """The producer has not finished the day yet (no `_SUCCESS`)."""


@dataclass(frozen=True)
class DeclaredFile:
    name: str
    rows: int


def day_prefix(dataset: str, day: date) -> str:
    return f"landing/{dataset}/dt={day.isoformat()}/"


def success_key(dataset: str, day: date) -> str:
    return day_prefix(dataset, day) + "_SUCCESS"


def write_success(store: ObjectStore, dataset: str, day: date, files: list[DeclaredFile]) -> None:
    """Finish a producer's day: called after every data file is written."""
    body = {
        "dataset": dataset,
        "dt": day.isoformat(),
        "files": [{"name": f.name, "rows": f.rows} for f in files],
    }
    store.put_bytes(success_key(dataset, day), json.dumps(body, indent=2).encode())


def read_success(store: ObjectStore, dataset: str, day: date) -> list[DeclaredFile]:
    key = success_key(dataset, day)
    try:
        raw = store.get_bytes(key)
    except ObjectNotFound as exc:
        raise LandingNotReady(
            f"{dataset} for {day}: no {key} in {store.url} yet; the producer has not finished "
            "the day. Wait for it, or ask the producer to write its files and _SUCCESS."
        ) from exc
    try:
        body = json.loads(raw)
        return [DeclaredFile(str(f["name"]), int(f["rows"])) for f in body["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{dataset} for {day}: {key} is not valid (expected JSON with a 'files' list of "
            f"{{name, rows}}): {exc}"
        ) from exc


def list_data_files(store: ObjectStore, dataset: str, day: date) -> list[str]:
    """Names of the data files present in the day's folder (not `_SUCCESS`, not hidden)."""
    prefix = day_prefix(dataset, day)
    return sorted(
        key[len(prefix) :]
        for key in store.list(prefix)
        if "/" not in key[len(prefix) :] and not key[len(prefix) :].startswith(("_", "."))
    )
