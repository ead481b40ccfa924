"""The online service's request log (`serving/requests/dt=D/`, mlpipeline.scoring.request_log).

A day's requests are kept until the nightly replayed them (training/serving skew), then for
the age, counted from the day's end. An unreplayed day is kept whatever its age, and logged
with the command that replays it; the snapshot exports its requests were served from are kept
by the export retention too (`unreplayed_exports`), since the replay reads them.

Which days were replayed comes from the monitoring metrics table: the replay's `serving_skew`
rows for scored day D are published there with the rest of the run day in one commit, so a
row exists exactly when a replay completed, and re-monitoring D rewrites it. A marker of our
own would be a second record to keep in step with the table, and could claim a replay whose
rows were never published. A replay counts only when it ran REPLAY_GRACE after D ended: one run
earlier (D monitored while it was still being served) may have missed requests logged later.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from mlpipeline.core.days import cutoff_ts
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.monitoring.metrics_table import METRICS_TABLE_KEY
from mlpipeline.monitoring.serving_skew import SERVING_SKEW
from mlpipeline.ops.retention.report import Report, delete_folders, utc
from mlpipeline.scoring.request_log import PREFIX, day_prefix
from mlpipeline.scoring.score_table import delta_location

log = logging.getLogger(__name__)

# Well above the log's flush interval (MLPIPELINE_REQUEST_LOG_FLUSH_SECONDS, 60 s by default)
# and its upload retries: every request of D is written by then.
REPLAY_GRACE = timedelta(hours=1)
EXPORT_COLUMN = "snapshot_export_id"


def replay_command(day: date | str) -> str:
    return f"mlpipeline monitor run --start {day} --end {day}"


def logged_days(store: ObjectStore) -> dict[date, list[str]]:
    """Each day of the log -> its keys."""
    days: dict[date, list[str]] = defaultdict(list)
    for key in store.list(f"{PREFIX}/dt="):
        folder = key[len(PREFIX) + 1 :].split("/", 1)[0]
        try:
            days[date.fromisoformat(folder.removeprefix("dt="))].append(key)
        except ValueError:
            continue  # not a day folder: left alone
    return days


def replays(store: ObjectStore) -> dict[date, datetime]:
    """Scored day -> when its request log was last replayed (its newest `serving_skew` row)."""
    location = delta_location(store, METRICS_TABLE_KEY)
    try:
        table = DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        return {}
    rows = table.to_pyarrow_table(
        columns=["scored_day", "computed_at"], filters=[("check", "=", SERVING_SKEW)]
    )
    latest: dict[date, datetime] = {}
    for day, computed in zip(
        rows.column("scored_day").to_pylist(), rows.column("computed_at").to_pylist(), strict=True
    ):
        latest[day] = max(utc(computed), latest.get(day, utc(computed)))
    return latest


def day_end(day: date) -> datetime:
    """The day's end (`cutoff_ts`) as an aware time, to compare with replay and age times."""
    return cutoff_ts(day).replace(tzinfo=UTC)


def is_replayed(day: date, replayed: dict[date, datetime]) -> bool:
    return day in replayed and replayed[day] >= day_end(day) + REPLAY_GRACE


def unreplayed_exports(store: ObjectStore) -> dict[str, list[date]]:
    """Export id -> the unreplayed days whose requests were served from it (read from those
    days' files, their export id column only)."""
    replayed = replays(store)
    served: dict[str, list[date]] = defaultdict(list)
    for day, keys in sorted(logged_days(store).items()):
        if is_replayed(day, replayed):
            continue
        ids: set[str] = set()
        for key in keys:
            if key.endswith(".parquet"):
                column = pq.read_table(io.BytesIO(store.get_bytes(key)), columns=[EXPORT_COLUMN])
                ids.update(v for v in column.column(EXPORT_COLUMN).to_pylist() if v is not None)
        for export_id in ids:
            served[export_id].append(day)
    return served


def clean_request_log(
    store: ObjectStore, *, now: datetime, max_age: timedelta, dry_run: bool
) -> Report:
    """Delete the replayed days older than the age; never an unreplayed day."""
    report = Report("request_log", utc(now), max_age, dry_run)
    replayed = replays(store)
    days = logged_days(store)
    doomed = {}
    for day, keys in sorted(days.items()):
        folder = day_prefix(day)
        old = day_end(day) < report.older_than
        if not is_replayed(day, replayed):
            reason = "not replayed yet"
            if old:
                reason += ", older than the age: replay it with `" + replay_command("D") + "`"
                log.warning(
                    "retention request_log: %s (%d files) is older than the age but was never "
                    "replayed%s: kept. Replay it with `%s`; the next run deletes it",
                    folder,
                    len(keys),
                    f" after the day ended (last replay {replayed[day]:%Y-%m-%d %H:%M} UTC)"
                    if day in replayed
                    else "",
                    replay_command(day),
                )
            report.keep(folder, reason)
        elif not old:
            report.keep(folder, "replayed, within the age")
        else:
            doomed[folder] = keys
    delete_folders(store, report, doomed)
    return report
