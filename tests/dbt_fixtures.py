"""Raw data for the dbt tests, written the way ingestion leaves it.

Rows go straight into raw.transactions / raw.chargebacks with one batch per dataset-day in
meta.batches, so the `*_current` views (and so dbt) see exactly the revisions marked `current`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import duckdb

from mlpipeline.warehouse.meta import utcnow
from mlpipeline.warehouse.raw_tables import ensure_raw, table_columns

CATEGORIES = ["grocery", "restaurants", "fuel", "travel", "electronics", "fashion"]
COUNTRIES = ["NL", "DE", "FR", "BE"]
CHANNELS = ["online", "pos", "contactless"]
REASONS = ["10.4", "10.5", "13.1", "4837", "4863"]


def ts(text: str) -> datetime:
    """`2026-02-05 23:59:59` as a naive UTC datetime."""
    return datetime.fromisoformat(text)


def txn(
    transaction_id: str,
    customer_id: str,
    event_ts: str,
    amount: str,
    *,
    merchant_id: str = "m1",
    category: str = "grocery",
    country: str = "NL",
    channel: str = "pos",
) -> dict:
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "merchant_id": merchant_id,
        "merchant_category": category,
        "amount": Decimal(amount),
        "currency": "EUR",
        "country": country,
        "channel": channel,
        "event_ts": ts(event_ts),
    }


def chargeback(transaction_id: str, reported_at: str, reason_code: str = "10.4") -> dict:
    return {
        "transaction_id": transaction_id,
        "reported_at": ts(reported_at),
        "reason_code": reason_code,
    }


def row_day(dataset: str, row: dict) -> date:
    """The landing day of a row: the event day of a transaction, the report day of a chargeback."""
    return (row["event_ts"] if dataset == "transactions" else row["reported_at"]).date()


def load_raw(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    rows: list[dict],
    *,
    revision: str = "r1",
    status: str = "current",
) -> None:
    """Write rows as one revision per dataset-day batch, registered with the given status."""
    ensure_raw(con)
    by_day: dict[date, list[dict]] = defaultdict(list)
    for row in rows:
        by_day[row_day(dataset, row)].append(row)
    columns = list(table_columns(dataset))
    insert = (
        f"INSERT INTO raw.{dataset} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    now = utcnow()
    for dt, day_rows in sorted(by_day.items()):
        batch_id = f"{dataset}:{dt.isoformat()}"
        con.execute(
            "INSERT INTO meta.batches (batch_id, revision, dataset, dt, status, content_checksum, "
            "rows_written, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [batch_id, revision, dataset, dt, status, f"sha-{revision}", len(day_rows), now, now],
        )
        lineage = {"dt": dt, "batch_id": batch_id, "revision": revision}
        con.executemany(
            insert,
            [
                [
                    {**row, **lineage, "source_file": "part-00000.csv", "source_row": i}[c]
                    for c in columns
                ]
                for i, row in enumerate(day_rows)
            ],
        )


def retire(con: duckdb.DuckDBPyConnection, dataset: str, dt: date, revision: str) -> None:
    """Take a revision out of `current`, as promoting a newer revision of its batch does."""
    con.execute(
        "UPDATE meta.batches SET status = 'superseded' WHERE batch_id = ? AND revision = ?",
        [f"{dataset}:{dt.isoformat()}", revision],
    )


def background(first: date, last: date, customers: int = 12, seed: int = 7) -> tuple[list, list]:
    """Deterministic everyday traffic so the incremental/full-refresh comparison is not trivial."""
    rng = random.Random(seed)
    transactions, chargebacks = [], []
    day = first
    while day <= last:
        for c in range(customers):
            for _ in range(rng.choice([0, 0, 1, 1, 2])):
                event = datetime.combine(day, datetime.min.time()) + timedelta(
                    seconds=rng.randrange(86400)
                )
                tid = f"bg-{len(transactions):05d}"
                transactions.append(
                    txn(
                        tid,
                        f"bg-c{c:02d}",
                        event.isoformat(sep=" "),
                        f"{rng.uniform(1, 400):.2f}",
                        merchant_id=f"bg-m{rng.randrange(20)}",
                        category=rng.choice(CATEGORIES),
                        country=rng.choice(COUNTRIES),
                        channel=rng.choice(CHANNELS),
                    )
                )
                if rng.random() < 0.05:
                    reported = event + timedelta(days=rng.randint(1, 25), hours=rng.randint(0, 23))
                    chargebacks.append(
                        chargeback(tid, reported.isoformat(sep=" "), rng.choice(REASONS))
                    )
        day += timedelta(days=1)
    return transactions, chargebacks
