"""What one retention pass decided: every item kept with the reason, every item deleted.

A dry run fills the same report as a real run (its `deleted` is the plan), so the two can be
compared and an operator can read what a run would remove before it does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlpipeline.core.progress import Progress

if TYPE_CHECKING:
    from mlpipeline.core.objectstore import ObjectStore

log = logging.getLogger(__name__)

# Items listed per reason in the printed report; counts are always complete.
LISTED = 20


@dataclass
class Report:
    kind: str
    now: datetime
    max_age: timedelta
    dry_run: bool
    kept: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def older_than(self) -> datetime:
        """Items older than this (and not protected) are deleted."""
        return self.now - self.max_age

    def keep(self, item: str, reason: str) -> None:
        self.kept.setdefault(reason, []).append(item)

    def delete(self, item: str, **sizes: Any) -> None:
        self.deleted.append({"item": item, **sizes})

    def kept_items(self) -> set[str]:
        return {item for items in self.kept.values() for item in items}

    def deleted_items(self) -> list[str]:
        return [entry["item"] for entry in self.deleted]

    def to_dict(self) -> dict[str, Any]:
        totals: dict[str, int] = {}
        for entry in self.deleted:
            for name, value in entry.items():
                if name != "item" and isinstance(value, int):
                    totals[name] = totals.get(name, 0) + value
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "max_age_days": self.max_age / timedelta(days=1),
            "deleted_count": len(self.deleted),
            "deleted_totals": totals,
            "deleted": self.deleted[:LISTED],
            "kept": {
                reason: {"count": len(items), "items": items[:LISTED]}
                for reason, items in self.kept.items()
            },
        }


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime (the warehouse and GX keep naive UTC times)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def deletions(report: Report, total: int) -> Progress:
    """Progress of one kind's deletions, in the log every 10 seconds."""
    return Progress(f"retention {report.kind}: deleted", total, log, unit="deletions", every=10)


def delete_folders(
    store: ObjectStore, report: Report, folders: dict[str, list[str]], marker: str | None = None
) -> None:
    """Delete each folder (prefix -> its keys), recording it in `report`; nothing under a dry
    run. The `marker` file (a manifest written last), if any, goes first: a folder without it
    reads as unfinished, so no reader ever picks up a half-deleted one."""
    progress = deletions(report, len(folders))
    for prefix, keys in folders.items():
        report.delete(prefix, files=len(keys))
        if report.dry_run:
            continue
        for key in sorted(keys, key=lambda k: marker is None or not k.endswith("/" + marker)):
            store.delete(key)
        progress.add()
