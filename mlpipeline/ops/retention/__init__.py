"""Scheduled cleanup of old artifacts by configured ages (pipeline.yaml `retention:`).

One module per kind, each with one function that takes `now` and `dry_run` and returns a
`Report` of what it kept (and why) and what it deleted. Whatever a reader, a rollback or an
operator may still need is kept whatever its age: the current raw revisions and quarantined
ones, the online snapshot's current / previous / pinned exports, the champion's, challenger's
and pinned versions' splits and runs, the score table's current version, the newest Data Docs
page per suite and subject.

This package imports no heavy library at import time (DAG files import it); each kind loads
its own when it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.ops.retention.report import Report

log = logging.getLogger(__name__)

# Kinds that open the warehouse: Airflow runs them in the `warehouse` pool.
WAREHOUSE_KINDS = ("raw_revisions", "warehouse_snapshots")


def max_age(kind: str) -> timedelta:
    """The configured age of a kind (pipeline.yaml `retention.days`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown retention kind {kind!r}; expected one of {KINDS}")
    days = (pipeline_conf().get("retention") or {}).get("days", {}).get(kind)
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        raise ValueError(
            f"pipeline.yaml has no valid `retention.days.{kind}` (got {days!r}); set it to a "
            "number of days (0 or more)"
        )
    return timedelta(days=days)


def _raw_revisions(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline import warehouse
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.raw import clean_raw_revisions

    with warehouse.connect(settings) as con:
        return clean_raw_revisions(
            con,
            objectstore.from_settings(settings),
            now=now,
            max_age=max_age("raw_revisions"),
            dry_run=dry_run,
        )


def _exports(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline import online
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.exports import clean_exports

    return clean_exports(
        objectstore.from_settings(settings),
        online.redis_client(settings),
        now=now,
        max_age=max_age("exports"),
        dry_run=dry_run,
    )


def _request_log(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.request_log import clean_request_log

    return clean_request_log(
        objectstore.from_settings(settings),
        now=now,
        max_age=max_age("request_log"),
        dry_run=dry_run,
    )


def _splits(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.splits import clean_splits

    return clean_splits(
        objectstore.from_settings(settings),
        settings.mlflow_tracking_uri,
        now=now,
        max_age=max_age("splits"),
        dry_run=dry_run,
    )


def _score_versions(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.scores import vacuum_score_table

    return vacuum_score_table(
        objectstore.from_settings(settings),
        now=now,
        max_age=max_age("score_versions"),
        dry_run=dry_run,
    )


def _data_docs(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline.core import objectstore
    from mlpipeline.ops.retention.data_docs import clean_data_docs
    from mlpipeline.quality import DataDocs

    docs = DataDocs.from_settings(settings, objectstore.from_settings(settings))
    return clean_data_docs(docs, now=now, max_age=max_age("data_docs"), dry_run=dry_run)


def _mlflow_runs(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline.ops.retention.mlflow_runs import clean_mlflow_runs

    return clean_mlflow_runs(
        settings.mlflow_tracking_uri, now=now, max_age=max_age("mlflow_runs"), dry_run=dry_run
    )


def _redis_snapshots(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline import online
    from mlpipeline.ops.retention.redis_snapshots import clean_redis_snapshots

    return clean_redis_snapshots(
        online.redis_client(settings),
        now=now,
        max_age=max_age("redis_snapshots"),
        dry_run=dry_run,
    )


def _warehouse_snapshots(settings: Settings, now: datetime, dry_run: bool) -> Report:
    from mlpipeline import warehouse
    from mlpipeline.ops.retention.warehouse_snapshots import maintain

    with warehouse.connect(settings) as con:
        return maintain(
            con,
            settings.mlflow_tracking_uri,
            now=now,
            max_age=max_age("warehouse_snapshots"),
            dry_run=dry_run,
        )


_RUNNERS: dict[str, Callable[[Settings, datetime, bool], Report]] = {
    "raw_revisions": _raw_revisions,
    "exports": _exports,
    "request_log": _request_log,
    "splits": _splits,
    "score_versions": _score_versions,
    "data_docs": _data_docs,
    "mlflow_runs": _mlflow_runs,
    "redis_snapshots": _redis_snapshots,
    "warehouse_snapshots": _warehouse_snapshots,
}
KINDS = tuple(_RUNNERS)


def run(
    kind: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Report:
    """Clean one kind with the configured services (the environment's, by default)."""
    if kind not in _RUNNERS:
        raise ValueError(f"unknown retention kind {kind!r}; expected one of {KINDS}")
    now = now or datetime.now(UTC)
    report = _RUNNERS[kind](settings or Settings.from_env(), now, dry_run)
    log.info(
        "retention %s%s: deleted %d, kept %d (older than %s deleted unless protected)",
        kind,
        " (dry run)" if dry_run else "",
        len(report.deleted),
        len(report.kept_items()),
        report.older_than.isoformat(),
    )
    return report
