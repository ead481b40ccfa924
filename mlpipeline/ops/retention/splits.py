"""Persisted dataset splits (`splits/split_id=<id>/`).

Kept whatever their age: the splits in the lineage of the protected model versions (champion,
challenger, pinned, rollback targets: see `mlflow_runs.protected_versions`), and splits a run
used within the age (a split id is a content hash, so an old split may be reused by a new run).
Otherwise a split goes once its `split.json` is older than the age. Unfinished folders (no
`split.json`, no creation time) are left alone.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime, timedelta

from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ops.retention.mlflow_runs import active_runs, protected_versions
from mlpipeline.ops.retention.report import Report, delete_folders, utc
from mlpipeline.training import model_registry
from mlpipeline.training.split import PREFIX
from mlpipeline.training.split_store import MANIFEST

log = logging.getLogger(__name__)


def _lineage(tracking_uri: str, since: datetime) -> dict[str, str]:
    """split id -> why it is needed: protected versions' lineage, runs started since `since`."""
    needed: dict[str, str] = {}
    mlflow_client = model_registry.client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(model_registry.EXPERIMENT)
    if experiment is not None:
        recent = active_runs(
            mlflow_client,
            experiment.experiment_id,
            f"attributes.start_time >= {int(since.timestamp() * 1000)}",
        )
        for run in recent:
            if run.data.tags.get("split_id"):
                needed[run.data.tags["split_id"]] = "used by a run within the age"
    for number, (reason, version) in protected_versions(tracking_uri).items():
        if version.tags.get("split_id"):
            needed[version.tags["split_id"]] = (
                f"lineage of {model_registry.MODEL_NAME} version {number} ({reason})"
            )
    return needed


def clean_splits(
    store: ObjectStore,
    tracking_uri: str,
    *,
    now: datetime,
    max_age: timedelta,
    dry_run: bool,
) -> Report:
    """Delete old splits no protected model version and no recent run refers to."""
    report = Report("splits", utc(now), max_age, dry_run)
    folders: dict[str, list[str]] = defaultdict(list)
    for key in store.list(f"{PREFIX}/split_id="):
        folders[key.rsplit("/", 1)[0] + "/"].append(key)
    needed = _lineage(tracking_uri, report.older_than)
    doomed = []
    for prefix, keys in sorted(folders.items()):
        split_id = prefix.rstrip("/").removeprefix(f"{PREFIX}/split_id=")
        if split_id in needed:
            report.keep(prefix, needed[split_id])
            continue
        if prefix + MANIFEST not in keys:
            report.keep(prefix, "unfinished (no split.json): left alone")
            continue
        created = datetime.fromisoformat(
            json.loads(store.get_bytes(prefix + MANIFEST))["created_at"]
        )
        if utc(created) >= report.older_than:
            report.keep(prefix, "created within the age")
        else:
            doomed.append(prefix)
    delete_folders(store, report, {p: folders[p] for p in doomed}, MANIFEST)
    return report
