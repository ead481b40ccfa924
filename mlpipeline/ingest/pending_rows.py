"""Chargebacks waiting for their transaction: kept, not dropped, and settled by the pipeline.

A chargeback can arrive before its transaction is current: the transaction's day is
quarantined, delivered late, or processed after the chargeback's day. Such a row stays in
`raw.chargebacks` with its batch and revision, and `raw.chargebacks_current` shows it from the
moment its transaction is current (see `raw_tables`), so a revision holds the same rows whatever
order the days are processed in, and no new revision is needed. Promoting the transaction's
revision marks the later processed days stale (`batches.promote`), and their normal re-run
recomputes them with the label.

`settle` runs after every promotion and records what only the transaction can tell: a chargeback
reported before its transaction is rejected, and one whose transaction is still missing
`pending_days` processing days after it was reported is rejected too, and returned for an alert.
Both land in `meta.rejected_rows`, which the current view leaves out.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from mlpipeline.core.config import pipeline_conf
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import claim, utcnow
from mlpipeline.warehouse.raw_tables import NOT_REJECTED

log = logging.getLogger(__name__)

REPORTED_BEFORE = "reported_at not before the transaction"

_REPORTED_BEFORE_SQL = f"""
SELECT r.batch_id, r.revision, r.source_file, r.source_row, r.reported_at, t.first_event_ts
FROM raw.chargebacks AS r
JOIN meta.batches AS b
  ON b.batch_id = r.batch_id AND b.revision = r.revision AND b.status = 'current'
JOIN (
    SELECT transaction_id, min(event_ts) AS first_event_ts
    FROM raw.transactions_current
    WHERE transaction_id IN (SELECT transaction_id FROM raw.chargebacks)
    GROUP BY transaction_id
) AS t ON t.transaction_id = r.transaction_id AND r.reported_at < t.first_event_ts
WHERE {NOT_REJECTED}
ORDER BY r.batch_id, r.source_file, r.source_row
"""


def pending_days() -> int:
    """How many processing days a chargeback may wait for its transaction (pipeline.yaml)."""
    return int(pipeline_conf()["ingest"]["pending_days"])


def expired_rule(days: int) -> str:
    return f"transaction current within {days} days of the chargeback"


@dataclass
class Settled:
    """What one `settle` found: rows still pending, and rows it rejected now."""

    pending_days: int
    pending: int = 0
    reported_before: int = 0
    expired: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reject(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        con.executemany("INSERT INTO meta.rejected_rows VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def settle(con: duckdb.DuckDBPyConnection, day: date, *, days: int | None = None) -> Settled:
    """Reject the current chargebacks reported before their transaction, and those still pending
    when `day` is `days` or more after their own day; count the rest as pending. Idempotent:
    a rejected row is recorded once, also when the night's two promotions settle at once (one
    unit, claiming the rejects registry: the second runs again and finds the first's rows)."""
    days = pending_days() if days is None else days
    settled = lake.run_unit(
        con, f"settling pending chargebacks on {day}", lambda c: _settle_once(c, day, days)
    )
    if settled.reported_before:
        log.warning(
            "%d chargeback(s) rejected: reported before their transaction (meta.rejected_rows)",
            settled.reported_before,
        )
    if settled.expired:
        log.warning(
            "%d chargeback(s) rejected after waiting %d days for their transaction; first: %s",
            len(settled.expired),
            days,
            settled.expired[:5],
        )
    if settled.pending:
        log.info(
            "%d chargeback(s) wait for their transaction to become current (meta.pending_rows)",
            settled.pending,
        )
    return settled


def _settle_once(con: duckdb.DuckDBPyConnection, day: date, days: int) -> Settled:
    claim(con, "rejected_rows")
    now = utcnow()
    before = con.execute(_REPORTED_BEFORE_SQL).fetchall()
    _reject(
        con,
        [
            (
                batch,
                rev,
                file,
                row,
                REPORTED_BEFORE,
                f"reported_at='{reported:%Y-%m-%dT%H:%M:%SZ}' before "
                f"event_ts='{first:%Y-%m-%dT%H:%M:%SZ}'",
                now,
            )
            for batch, rev, file, row, reported, first in before
        ],
    )
    expired = con.execute(
        "SELECT batch_id, revision, source_file, source_row, dt, waits_for_transaction "
        "FROM meta.pending_rows WHERE dt <= ? ORDER BY dt, batch_id, source_file, source_row",
        [day - timedelta(days=days)],
    ).fetchall()
    rule = expired_rule(days)
    _reject(
        con,
        [
            (batch, rev, file, row, rule, f"transaction_id={str(txn)[:60]!r}", now)
            for batch, rev, file, row, _, txn in expired
        ],
    )
    (pending,) = con.execute("SELECT count(*) FROM meta.pending_rows").fetchone()
    return Settled(
        pending_days=days,
        pending=int(pending),
        reported_before=len(before),
        expired=[
            {
                "batch_id": batch,
                "revision": rev,
                "file": file,
                "row": row,
                "day": dt.isoformat(),
                "transaction_id": txn,
            }
            for batch, rev, file, row, dt, txn in expired
        ],
    )
