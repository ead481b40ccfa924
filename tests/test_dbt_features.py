"""The dbt feature project against real DuckDB files and real dbt builds.

One module-scoped scenario keeps the dbt invocations few: warehouse A is built like the nightly
(a first build on 2026-02-08, then incrementally day by day while the raw data arrives), warehouse
B gets the same raw data at once and one full refresh. A's last day is then corrected by a new
revision and re-run, which must replace that day's rows. Hand-computed customers pin the window
maths, the cutoff and publication-lag boundaries, the TTL and the label rules. B, which holds
the future of A's first build (later transactions, later chargebacks, later snapshots), then
rebuilds the training set for that first cutoff: nothing of the future may show. B's snapshot is
also exported and pushed to a real Redis, where the online reader must answer exactly what the
point-in-time join gave each transaction, known customer or not.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.features import dbt_failures, dbt_project, transform
from mlpipeline.warehouse import connect, dev_db
from tests.dbt_fixtures import background, chargeback, load_raw, retire, row_day, ts, txn

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 1, 1)
FIRST_BUILD = date(2026, 2, 8)
LAST_DAY = date(2026, 2, 10)
OLDER_DAY = LAST_DAY - timedelta(days=1)
LINEAGE = ["dbt_invocation_id", "built_at"]
# A training window shorter than the scenario's matured history (dbt var training_window_days).
WINDOW_DAYS = 10
TABLES = (
    "features.customer_lifetime",
    "features.customer_snapshot",
    "features.transaction_features",
    "marts.training_set",
)

# c_hand: every window boundary of cutoff 2026-02-05 (cutoff_ts 2026-02-06 00:00).
# id, customer, event_ts, amount, merchant, category, country, channel
HAND_ROWS = [
    ("h-a", "c_hand", "2026-01-01 09:00:00", "5.00", "m9", "grocery", "NL", "pos"),
    ("h-b", "c_hand", "2026-01-06 23:59:59", "7.00", "m8", "jewelry", "US", "pos"),
    ("h-c", "c_hand", "2026-01-07 00:00:00", "11.00", "m1", "grocery", "FR", "pos"),
    ("h-d", "c_hand", "2026-01-29 23:59:59", "13.00", "m1", "grocery", "NL", "pos"),
    ("h-e", "c_hand", "2026-01-30 00:00:00", "17.00", "m2", "fuel", "DE", "online"),
    ("h-f", "c_hand", "2026-02-04 23:59:59", "19.00", "m3", "grocery", "NL", "pos"),
    ("h-g", "c_hand", "2026-02-05 00:00:00", "23.00", "m3", "travel", "NL", "contactless"),
    ("h-h", "c_hand", "2026-02-05 23:59:59", "29.00", "m3", "travel", "NL", "online"),
    ("h-i", "c_hand", "2026-02-06 00:00:00", "1000.00", "m1", "grocery", "NL", "pos"),
    ("h-j", "c_hand", "2026-02-06 01:59:59", "3.00", "m1", "grocery", "NL", "pos"),
    ("h-k", "c_hand", "2026-02-06 02:00:00", "4.00", "m1", "grocery", "NL", "pos"),
    # ties on usual_country: equal counts go to the most recent, equal times alphabetically
    ("t-1", "c_tie", "2026-02-01 10:00:00", "10.00", "m1", "grocery", "FR", "pos"),
    ("t-2", "c_tie", "2026-02-03 10:00:00", "10.00", "m1", "grocery", "DE", "pos"),
    ("t-3", "c_alpha", "2026-02-02 12:00:00", "10.00", "m1", "grocery", "IT", "pos"),
    ("t-4", "c_alpha", "2026-02-02 12:00:00", "10.00", "m1", "grocery", "BE", "pos"),
    # c_lapsed: inside the TTL of cutoff 02-05 with nothing in 30 days, gone from 02-06
    ("l-1", "c_lapsed", "2026-01-02 10:00:00", "50.00", "m1", "grocery", "NL", "pos"),
    ("l-2", "c_lapsed", "2026-02-10 12:00:00", "60.00", "m1", "grocery", "NL", "pos"),
    # c_new: first seen after its snapshot was taken
    ("n-1", "c_new", "2026-02-06 10:00:00", "70.00", "m1", "grocery", "NL", "pos"),
    # c_old: one early transaction, disputed two days later; kept by the TTL until 02-04
    ("o-1", "c_old", "2026-01-01 10:00:00", "80.00", "m1", "grocery", "NL", "pos"),
]
HAND = [
    txn(tid, cid, at, amount, merchant_id=merchant, category=category, country=country, channel=ch)
    for tid, cid, at, amount, merchant, category, country, ch in HAND_ROWS
]
HAND_CHARGEBACKS = [
    chargeback("h-a", "2026-01-20 10:00:00"),
    chargeback("h-b", "2026-02-09 12:00:00"),
    chargeback("h-d", "2026-02-05 23:00:00"),
    chargeback("h-f", "2026-02-06 00:00:00"),
    chargeback("h-c", "2026-02-11 00:00:00"),
    chargeback("x-unknown", "2026-02-03 08:00:00"),
    # Reported during an incremental run on a transaction older than its lookback window.
    chargeback("l-1", "2026-02-09 10:00:00"),
    chargeback("o-1", "2026-01-03 10:00:00"),
]
# A revision that never became current: nothing of it may reach the features.
QUARANTINED = [txn("q-1", "c_hand", "2026-02-05 12:00:00", "5000.00")]


@dataclass
class Warehouse:
    """What one build left in the warehouse, read back right after it."""

    tables: dict[str, list[dict[str, Any]]]
    columns: dict[str, list[tuple[str, str]]]
    summary: dict[str, Any]


def _load(settings: Settings, transactions: list, chargebacks: list) -> None:
    warehouse.create(settings)
    with connect(settings) as con:
        load_raw(con, "transactions", transactions)
        load_raw(con, "chargebacks", chargebacks)


def _read(settings: Settings, summary: dict[str, Any]) -> Warehouse:
    tables, columns = {}, {}
    with connect(settings, read_only=True) as con:
        for name in TABLES:
            cur = con.execute(f"SELECT * FROM {name}")
            names = [d[0] for d in cur.description]
            tables[name] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            schema, table = name.split(".")
            columns[name] = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
    return Warehouse(tables, columns, summary)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _corrected(rows: list, chargebacks: list, day: date) -> list:
    """A producer's correction of one day: one transaction withdrawn, one amount fixed."""
    disputed = {c["transaction_id"] for c in chargebacks}
    day_rows = [
        r
        for r in rows
        if row_day("transactions", r) == day and r["transaction_id"].startswith("bg-")
    ]
    withdrawn = next(r for r in day_rows if r["transaction_id"] not in disputed)
    fixed = next(r for r in day_rows if r is not withdrawn)
    return [
        {**r, "amount": Decimal("999.99")} if r is fixed else r
        for r in rows
        if row_day("transactions", r) == day and r is not withdrawn
    ]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    transactions, chargebacks = background(FIRST_DAY, LAST_DAY)
    transactions += HAND
    chargebacks += HAND_CHARGEBACKS
    correction = _corrected(transactions, chargebacks, LAST_DAY)

    def upto(rows: list, dataset: str, first: date, last: date) -> list:
        return [r for r in rows if first <= row_day(dataset, r) <= last]

    nightly = Settings.under(tmp_path_factory.mktemp("nightly"))
    _load(nightly, upto(transactions, "transactions", FIRST_DAY, FIRST_BUILD),
          upto(chargebacks, "chargebacks", FIRST_DAY, FIRST_BUILD))  # fmt: skip
    with connect(nightly) as con:
        load_raw(con, "transactions", QUARANTINED, revision="r2", status="quarantined")

    collect = _Collect()
    dbt_logger = logging.getLogger("mlpipeline.features.transform.dbt")
    level = dbt_logger.level
    dbt_logger.addHandler(collect)
    dbt_logger.setLevel(logging.INFO)
    try:
        summary = transform.build(FIRST_BUILD, settings=nightly)
    finally:
        dbt_logger.removeHandler(collect)
        dbt_logger.setLevel(level)
    states = {FIRST_BUILD: _read(nightly, summary)}
    for day in (date(2026, 2, 9), LAST_DAY):
        last = day if day < LAST_DAY else date(2026, 12, 31)  # the last load brings everything
        _load(nightly, upto(transactions, "transactions", day, last),
              upto(chargebacks, "chargebacks", day, last))  # fmt: skip
        states[day] = _read(nightly, transform.build(day, settings=nightly))
    # The producer corrects the last day; its new revision becomes current and the day re-runs.
    with connect(nightly) as con:
        load_raw(con, "transactions", correction, revision="r2")
        retire(con, "transactions", LAST_DAY, "r1")
    rerun = _read(nightly, transform.build(LAST_DAY, settings=nightly))
    # Then an older day is corrected and re-run alone: its cutoff's snapshot changes under
    # transactions of the next day that saw it.
    with connect(nightly) as con:
        load_raw(
            con, "transactions", _corrected(transactions, chargebacks, OLDER_DAY), revision="r2"
        )
        retire(con, "transactions", OLDER_DAY, "r1")
    older_rerun = _read(nightly, transform.build(OLDER_DAY, settings=nightly))

    refreshed = Settings.under(tmp_path_factory.mktemp("refreshed"))
    _load(
        refreshed, [r for r in transactions if row_day("transactions", r) != LAST_DAY], chargebacks
    )
    with connect(refreshed) as con:
        load_raw(con, "transactions", correction, revision="r2")
    full = _read(refreshed, transform.build(LAST_DAY, settings=refreshed, full_refresh=True))
    freshness = {
        day: transform.source_freshness(day, settings=refreshed)
        for day in (LAST_DAY, LAST_DAY + timedelta(days=3))
    }
    # B holds the future of A's first build: its training set for that cutoff must match A's.
    transform.build(
        LAST_DAY,
        settings=refreshed,
        select="training_set",
        variables={"training_cutoff": FIRST_BUILD.isoformat()},
    )
    with_future = _read(refreshed, {})
    transform.build(
        LAST_DAY,
        settings=refreshed,
        select="training_set",
        variables={"training_window_days": WINDOW_DAYS},
    )
    windowed = _read(refreshed, {})
    return {
        "nightly": states,
        "rerun": rerun,
        "older_rerun": older_rerun,
        "full": full,
        "with_future": with_future,
        "windowed": windowed,
        "refreshed": refreshed,
        "freshness": freshness,
        "dbt_log": collect.messages,
    }


def _snapshot_row(wh: Warehouse, customer: str, cutoff: date) -> dict[str, Any] | None:
    rows = [
        r
        for r in wh.tables["features.customer_snapshot"]
        if r["customer_id"] == customer and r["cutoff_date"] == cutoff
    ]
    assert len(rows) <= 1
    return rows[0] if rows else None


def _txn_row(wh: Warehouse, transaction_id: str) -> dict[str, Any]:
    (row,) = [
        r
        for r in wh.tables["features.transaction_features"]
        if r["transaction_id"] == transaction_id
    ]
    return row


def test_windows_match_hand_computed_values(scenario: dict) -> None:
    row = _snapshot_row(scenario["full"], "c_hand", date(2026, 2, 5))
    assert row is not None
    assert row["cutoff_ts"] == ts("2026-02-06 00:00:00")
    assert row["available_at"] == ts("2026-02-06 02:00:00")
    assert (row["txn_count_24h"], row["txn_count_7d"], row["txn_count_30d"]) == (2, 4, 6)
    assert row["amount_sum_24h"] == Decimal("52.00")
    assert row["amount_sum_7d"] == Decimal("88.00")
    assert row["amount_sum_30d"] == Decimal("112.00")
    assert row["amount_mean_30d"] == Decimal("18.67")
    assert row["amount_max_30d"] == Decimal("29.00")
    assert (row["distinct_merchants_30d"], row["distinct_categories_30d"]) == (3, 3)
    assert row["distinct_countries_30d"] == 3
    assert row["usual_country"] == "NL"
    assert row["online_share_30d"] == pytest.approx(2 / 6)
    assert row["last_txn_ts"] == ts("2026-02-05 23:59:59")


def test_later_transactions_do_not_leak_into_a_snapshot(scenario: dict) -> None:
    """h-i (1000.00) at exactly cutoff_ts and a quarantined 5000.00 must both stay invisible."""
    row = _snapshot_row(scenario["nightly"][FIRST_BUILD], "c_hand", date(2026, 2, 5))
    assert row is not None
    assert row["amount_max_30d"] == Decimal("29.00")
    assert row["last_txn_ts"] < row["cutoff_ts"]
    after = _snapshot_row(scenario["full"], "c_hand", date(2026, 2, 6))
    assert (
        after is not None
        and after["txn_count_24h"] == 3
        and after["amount_max_30d"] == Decimal("1000.00")
    )
    assert all(
        r["transaction_id"] != "q-1"
        for r in scenario["rerun"].tables["features.transaction_features"]
    )


def test_chargebacks_count_only_when_reported_before_the_cutoff(scenario: dict) -> None:
    """h-f's chargeback is reported at 02-06 00:00, i.e. exactly at cutoff_ts of 02-05."""
    totals = {
        day: _snapshot_row(scenario["full"], "c_hand", day)["chargebacks_30d"]
        for day in (
            date(2026, 1, 19),
            date(2026, 1, 20),
            date(2026, 2, 4),
            date(2026, 2, 5),
            date(2026, 2, 6),
        )
    }
    assert totals == {
        date(2026, 1, 19): 0,
        date(2026, 1, 20): 1,
        date(2026, 2, 4): 1,
        date(2026, 2, 5): 2,
        date(2026, 2, 6): 3,
    }


def test_chargebacks_count_over_the_last_30_days_only(scenario: dict) -> None:
    """o-1's chargeback, reported 01-03, counts for the 30 cutoffs 01-03 to 02-01."""
    days = [date(2026, 1, d) for d in (2, 3, 5)] + [date(2026, 2, 1), date(2026, 2, 2)]
    counts = {day: _snapshot_row(scenario["full"], "c_old", day)["chargebacks_30d"] for day in days}
    assert counts == {
        date(2026, 1, 2): 0,
        date(2026, 1, 3): 1,
        date(2026, 1, 5): 1,
        date(2026, 2, 1): 1,
        date(2026, 2, 2): 0,
    }


def test_usual_country_ties_are_deterministic(scenario: dict) -> None:
    assert _snapshot_row(scenario["full"], "c_tie", date(2026, 2, 5))["usual_country"] == "DE"
    assert _snapshot_row(scenario["full"], "c_alpha", date(2026, 2, 5))["usual_country"] == "BE"


def test_ttl_keeps_inactive_customers_with_nulls_then_drops_them(scenario: dict) -> None:
    kept = _snapshot_row(scenario["full"], "c_lapsed", date(2026, 2, 5))
    assert kept is not None
    assert (kept["txn_count_30d"], kept["amount_sum_30d"]) == (0, Decimal("0.00"))
    assert kept["amount_mean_30d"] is None and kept["usual_country"] is None
    assert _snapshot_row(scenario["full"], "c_lapsed", date(2026, 2, 6)) is None


def test_snapshot_cutoff_follows_the_publication_lag(scenario: dict) -> None:
    wh = scenario["full"]
    at_cutoff, before_lag, at_lag = _txn_row(wh, "h-i"), _txn_row(wh, "h-j"), _txn_row(wh, "h-k")
    assert before_lag["snapshot_cutoff"] == date(2026, 2, 4)
    assert before_lag["txn_count_24h"] == 1 and before_lag["amount_sum_30d"] == Decimal("67.00")
    assert at_lag["snapshot_cutoff"] == date(2026, 2, 5)
    assert at_lag["txn_count_24h"] == 2 and at_lag["amount_sum_30d"] == Decimal("112.00")
    assert at_cutoff["snapshot_cutoff"] == date(2026, 2, 4)
    first_available = ts("2026-01-02 02:00:00")
    for row in wh.tables["features.transaction_features"]:
        assert (row["snapshot_cutoff"] is None) == (row["event_ts"] < first_available)


def test_absent_customers_get_the_declared_defaults(scenario: dict) -> None:
    spec = dbt_project.online_spec()
    wh = scenario["full"]
    for transaction_id, cutoff in (
        ("n-1", date(2026, 2, 5)),
        ("l-2", date(2026, 2, 9)),
        ("h-a", None),
    ):
        row = _txn_row(wh, transaction_id)
        assert row["snapshot_cutoff"] == cutoff
        assert {f.name: row[f.name] for f in spec.features} == {
            f.name: f.default for f in spec.features
        }
    present = _txn_row(wh, "t-2")
    assert present["snapshot_cutoff"] == date(2026, 2, 2)
    assert present["txn_count_30d"] == 1 and present["usual_country"] == "FR"


def test_training_set_keeps_matured_rows_with_labels_known_at_the_cutoff(scenario: dict) -> None:
    early = scenario["nightly"][FIRST_BUILD].tables["marts.training_set"]
    late = scenario["full"].tables["marts.training_set"]
    early_horizon, late_horizon = ts("2026-01-19 00:00:00"), ts("2026-01-21 00:00:00")
    assert early and all(r["event_ts"] < early_horizon for r in early)
    assert {r["training_cutoff"] for r in early} == {FIRST_BUILD}
    assert {r["training_cutoff"] for r in late} == {LAST_DAY}
    features = scenario["full"].tables["features.transaction_features"]
    assert {r["transaction_id"] for r in late} == {
        r["transaction_id"] for r in features if r["event_ts"] < late_horizon
    }
    early_labels = {r["transaction_id"]: r["is_fraud"] for r in early}
    late_labels = {r["transaction_id"]: r["is_fraud"] for r in late}
    assert (early_labels["h-a"], early_labels["h-b"], early_labels["h-c"]) == (1, 0, 0)
    assert (late_labels["h-a"], late_labels["h-b"], late_labels["h-c"]) == (1, 1, 0)
    assert "h-d" not in late_labels


def test_the_training_window_bounds_the_rows_and_keeps_their_labels(scenario: dict) -> None:
    """Only the last WINDOW_DAYS before the label horizon are training rows, labelled and
    featured exactly as in the unbounded set."""
    horizon = ts("2026-01-21 00:00:00")
    start = horizon - timedelta(days=WINDOW_DAYS)
    windowed = scenario["windowed"].tables["marts.training_set"]
    unbounded = scenario["full"].tables["marts.training_set"]
    assert min(r["event_ts"] for r in unbounded) < start, "the window must cut something"
    assert windowed and all(start <= r["event_ts"] < horizon for r in windowed)
    assert _rows(scenario["windowed"], "marts.training_set") == _rows(
        scenario["full"], "marts.training_set", lambda r: r["event_ts"] >= start
    )


def _rows(wh: Warehouse, table: str, keep: Any = None) -> list[tuple]:
    """A table's rows without lineage, sorted; `keep(row)` narrows them."""
    return sorted(
        tuple((k, v) for k, v in r.items() if k not in LINEAGE)
        for r in wh.tables[table]
        if keep is None or keep(r)
    )


def test_incremental_day_by_day_with_a_rerun_equals_full_refresh(scenario: dict) -> None:
    nightly, full = scenario["rerun"], scenario["full"]
    for table in TABLES:
        assert _rows(nightly, table) == _rows(full, table), table
        assert nightly.columns[table] == full.columns[table]
    cutoffs = {r["cutoff_date"] for r in full.tables["features.customer_snapshot"]}
    assert min(cutoffs) == FIRST_DAY and max(cutoffs) == LAST_DAY and len(cutoffs) == 41
    built = {
        r["cutoff_date"]: r["dbt_invocation_id"]
        for r in nightly.tables["features.customer_snapshot"]
    }
    assert len({built[date(2026, 2, d)] for d in (8, 9, 10)}) == 3, "one cutoff per incremental run"
    assert len({built[date(2026, 1, 1) + timedelta(days=d)] for d in range(39)}) == 1
    before = scenario["nightly"][LAST_DAY].tables["features.transaction_features"]
    after = nightly.tables["features.transaction_features"]
    assert len(after) == len(before) - 1, "the withdrawn transaction is gone after the re-run"
    assert sum(r["amount"] == Decimal("999.99") for r in after) == 1
    assert {r["revision"] for r in after if r["dt"] == LAST_DAY} == {"r2"}


def test_rerunning_an_older_day_rejoins_the_later_transactions_that_saw_its_cutoff(
    scenario: dict,
) -> None:
    before, after = scenario["rerun"], scenario["older_rerun"]
    snapshot = {
        r["customer_id"]: r
        for r in after.tables["features.customer_snapshot"]
        if r["cutoff_date"] == OLDER_DAY
    }
    rows = after.tables["features.transaction_features"]
    features = (set(rows[0]) & set(next(iter(snapshot.values())))) - {"customer_id", *LINEAGE}
    saw = [r for r in rows if r["snapshot_cutoff"] == OLDER_DAY and r["customer_id"] in snapshot]
    assert saw and {r["dt"] for r in saw} == {LAST_DAY}
    for row in saw:
        assert {f: row[f] for f in features} == {
            f: snapshot[row["customer_id"]][f] for f in features
        }, row["transaction_id"]
    old = {r["transaction_id"]: r for r in before.tables["features.transaction_features"]}
    assert any(old[r["transaction_id"]]["amount_sum_24h"] != r["amount_sum_24h"] for r in saw)


def test_incremental_runs_carry_lifetime_totals_without_reading_history(scenario: dict) -> None:
    """l-1 (2026-01-02) is disputed on 02-09, 38 days later: older than the incremental run's
    lookback window, so its customer is found in the whole history; the total then carries."""
    changes = {
        r["cutoff_date"]: r["chargebacks_total"]
        for r in scenario["rerun"].tables["features.customer_lifetime"]
        if r["customer_id"] == "c_lapsed"
    }
    assert changes == {date(2026, 1, 2): 0, date(2026, 2, 9): 1}
    row = _snapshot_row(scenario["rerun"], "c_lapsed", LAST_DAY)
    assert row is not None and row["chargebacks_30d"] == 1
    hand = {
        r["cutoff_date"]: r["chargebacks_total"]
        for r in scenario["rerun"].tables["features.customer_lifetime"]
        if r["customer_id"] == "c_hand"
    }
    # First transaction, then each day a chargeback was reported (x-unknown has no customer).
    assert hand == {
        date(2026, 1, 1): 0,
        date(2026, 1, 20): 1,
        date(2026, 2, 5): 2,
        date(2026, 2, 6): 3,
        date(2026, 2, 9): 4,
    }


def test_future_data_reaches_no_feature_or_label(scenario: dict) -> None:
    """Warehouse A's first build knew the data up to FIRST_BUILD only. B also holds what came
    after: two more days of transactions, chargebacks reported up to weeks later, and the
    snapshots of later cutoffs. Everything as of FIRST_BUILD must be identical in both."""
    past, future = scenario["nightly"][FIRST_BUILD], scenario["with_future"]
    horizon = datetime.combine(FIRST_BUILD + timedelta(days=1), datetime.min.time())
    keep = {
        "features.customer_lifetime": lambda r: r["cutoff_date"] <= FIRST_BUILD,
        "features.customer_snapshot": lambda r: r["cutoff_date"] <= FIRST_BUILD,
        "features.transaction_features": lambda r: r["event_ts"] < horizon,
        "marts.training_set": None,
    }
    for table, rule in keep.items():
        assert _rows(past, table, rule) == _rows(future, table, rule), table
    # The future really is in B: later cutoffs, later transactions, and labels it would change.
    assert max(r["cutoff_date"] for r in future.tables["features.customer_snapshot"]) == LAST_DAY
    assert max(r["event_ts"] for r in future.tables["features.transaction_features"]) > horizon
    labels = {r["transaction_id"]: r["is_fraud"] for r in future.tables["marts.training_set"]}
    later = {
        r["transaction_id"]: r["is_fraud"] for r in scenario["full"].tables["marts.training_set"]
    }
    assert (labels["h-b"], later["h-b"]) == (0, 1)  # disputed on 02-09, after FIRST_BUILD
    assert {r["training_cutoff"] for r in future.tables["marts.training_set"]} == {FIRST_BUILD}


def _plain(value: Any) -> Any:
    """DuckDB's DECIMAL next to the JSON number the online store serves."""
    return float(value) if isinstance(value, Decimal) else value


def test_offline_features_equal_what_the_online_store_serves(
    scenario: dict, redis_url: str, tmp_path: Path
) -> None:
    """Cutoff 02-09 goes through the real export, push, verify and switch. Every transaction
    that saw it got, offline, exactly the vector the online reader returns for its customer:
    the stored one, or the manifest's defaults for a customer absent from the snapshot."""
    from mlpipeline.core.objectstore import LocalStore
    from mlpipeline.features.export import export_snapshot
    from mlpipeline.features.wire_format import columns_from_spec
    from mlpipeline.online import OnlineReader, push_staged, switch, verify_staged

    cutoff = date(2026, 2, 9)
    spec = dbt_project.online_spec()
    store = LocalStore(tmp_path / "objectstore")
    with connect(scenario["refreshed"], read_only=True) as con:
        manifest = export_snapshot(con, store, cutoff, spec, dbt_project.manifest_hash()).manifest
    push_staged(redis_url, store, manifest)
    verify_staged(redis_url, manifest)
    switch(redis_url, manifest)
    assert manifest["defaults"] == {c.name: c.default for c in columns_from_spec(spec)}

    seen = [
        r
        for r in scenario["full"].tables["features.transaction_features"]
        if r["snapshot_cutoff"] == cutoff
    ]
    read = OnlineReader(redis_url).read([r["customer_id"] for r in seen])
    names = [f.name for f in spec.features]
    for row, online, known in zip(seen, read.rows, read.known, strict=True):
        offline = {n: _plain(row[n]) for n in names}
        assert offline == {n: _plain(online[n]) for n in names}, (row["transaction_id"], known)
    unknown = {r["customer_id"] for r, known in zip(seen, read.known, strict=True) if not known}
    assert unknown == {"c_lapsed"}  # dropped out of the snapshot, back on 02-10 (l-2)
    assert sum(read.known) > 0


def test_source_freshness_is_measured_against_the_processing_day(scenario: dict) -> None:
    """Ages are taken at cutoff_ts(D) from the newest row before it, whatever today is: on D
    the data is fresh; three days later (nothing new before that cutoff) it warns, no error."""
    refreshed = scenario["refreshed"]
    for day, status in ((LAST_DAY, "pass"), (LAST_DAY + timedelta(days=3), "warn")):
        cutoff = datetime.combine(day + timedelta(days=1), datetime.min.time())
        with connect(refreshed, read_only=True) as con:
            newest = con.execute(
                "SELECT max(event_ts) FROM raw.transactions_current WHERE event_ts < ?", [cutoff]
            ).fetchone()[0]
        measured = scenario["freshness"][day]["raw.transactions_current"]
        assert measured["status"] == status
        assert measured["age_hours"] == pytest.approx((cutoff - newest).total_seconds() / 3600)
    assert scenario["freshness"][LAST_DAY]["raw.transactions_current"]["age_hours"] < 12
    assert set(scenario["freshness"][LAST_DAY]) == {
        "raw.transactions_current",
        "raw.chargebacks_current",
    }


def test_columns_follow_the_online_spec(scenario: dict) -> None:
    spec = dbt_project.online_spec()
    names = [f.name for f in spec.features]
    cols = scenario["full"].columns
    snapshot = cols["features.customer_snapshot"]
    assert [c for c, _ in snapshot] == [
        "customer_id",
        "cutoff_date",
        "cutoff_ts",
        "available_at",
        *names,
        *LINEAGE,
    ]
    assert [t for _, t in snapshot[4 : 4 + len(names)]] == [f.type for f in spec.features]
    lineage = ["transaction_id", "customer_id", "merchant_id", "merchant_category", "amount",
               "currency", "country", "channel", "event_ts", "dt", "batch_id", "revision",
               "snapshot_cutoff"]  # fmt: skip
    assert [c for c, _ in cols["features.transaction_features"]] == [*lineage, *names]
    assert [c for c, _ in cols["marts.training_set"]] == [
        *lineage,
        *names,
        "is_fraud",
        "training_cutoff",
    ]
    assert dict(cols["marts.training_set"])["is_fraud"] == "INTEGER"
    assert spec.entity_key == "customer_id" and spec.ttl_days == 35


def test_build_summarises_warnings_and_forwards_dbt_logs(scenario: dict) -> None:
    # The scenario's chargeback of a transaction that never became current waits outside
    # raw.chargebacks_current (meta.pending_rows), so no test warns; warnings are summarised in
    # test_staging_tests_judge_the_processing_day_so_an_old_bad_value_blocks_no_later_night.
    summary = scenario["full"].summary
    assert summary["warnings"] == []
    assert summary["processing_day"] == "2026-02-10" and summary["full_refresh"] is True
    assert summary["dbt_manifest_hash"] == dbt_project.manifest_hash()
    assert summary["nodes"] > 40
    assert any(m.startswith("Running with dbt=") for m in scenario["dbt_log"])
    assert any("Done. PASS=" in m and "WARN=0" in m for m in scenario["dbt_log"])


def test_failed_build_names_the_failing_test_and_its_rows(tmp_path: Path) -> None:
    settings = Settings.under(tmp_path)
    dup = txn("dup-1", "c1", "2026-01-02 10:00:00", "1.00")
    _load(settings, [txn("dup-1", "c1", "2026-01-02 09:00:00", "1.00"), dup], [])
    with pytest.raises(dbt_failures.DbtBuildError) as caught:
        transform.build(
            "2026-01-02", settings=settings, select=["stg_transactions", "stg_chargebacks"]
        )
    message = str(caught.value)
    assert "unique_stg_transactions_transaction_id: fail, 1 failing rows" in message
    assert "dbt.log" in message
    assert [f.name for f in caught.value.failures] == ["unique_stg_transactions_transaction_id"]
    with connect(settings, read_only=True) as con:  # the build released the warehouse
        assert con.execute("SELECT count(*) FROM staging.stg_transactions").fetchone() == (2,)


def test_manifest_hash_tracks_the_dbt_code_only(tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "dbt_project"
    shutil.copytree(
        Settings.from_env().dbt_project_dir,
        project,
        ignore=shutil.ignore_patterns("target", "logs"),
    )
    before = dbt_project.manifest_hash(project)
    assert before == dbt_project.manifest_hash(project) and len(before) == 64
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    (project / "profiles.yml").write_text((project / "profiles.yml").read_text() + "\n# local\n")
    assert dbt_project.manifest_hash(project) == before
    model = project / "models" / "marts" / "training_set.sql"
    model.write_text(model.read_text() + "\n-- changed\n")
    assert dbt_project.manifest_hash(project) != before


def test_online_spec_rejects_a_feature_without_default(tmp_path: Path) -> None:
    path = tmp_path / "models" / "features" / "customer_snapshot.yml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "version: 2\nmodels:\n  - name: customer_snapshot\n    config:\n      meta:\n"
        "        online:\n          entity_key: customer_id\n          ttl_days: 35\n"
        "          features:\n            - {name: txn_count_24h, type: BIGINT}\n"
    )
    with pytest.raises(ValueError, match=r"features\[0\] needs name, type and default"):
        dbt_project.online_spec(tmp_path)


def test_the_dev_target_writes_its_own_lake_and_reads_production_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    settings = Settings.under(tmp_path)
    for variable in (
        "DEV_WAREHOUSE_CATALOG",
        "DEV_WAREHOUSE_DATA_PATH",
        "WAREHOUSE_READER_CATALOG",
    ):
        monkeypatch.delenv(variable, raising=False)
    prod = transform._target(settings, "prod")
    assert prod.env["WAREHOUSE_CATALOG"] == settings.warehouse_catalog
    assert Path(prod.env["DUCKDB_EXTENSION_DIRECTORY"]).is_dir() and not prod.dev
    dev = transform._target(settings, "dev")
    assert dev.dev and dev.env["DEV_WAREHOUSE_CATALOG"] == f"sqlite:{tmp_path / 'dev.sqlite'}"
    assert dev.env["WAREHOUSE_READER_CATALOG"] == settings.warehouse_catalog
    day = date(2026, 1, 10)
    transactions, chargebacks = background(date(2026, 1, 1), day)
    _load(settings, transactions, chargebacks)

    transform.build(day, settings=settings, target="dev", full_refresh=True, tests=False)
    with dev_db.connect_dev(settings) as con:
        built = con.execute("SELECT count(*) FROM dev.features.customer_snapshot").fetchall()
        raw = con.execute("SELECT count(*) FROM lake.raw.transactions_current").fetchall()
    assert built[0][0] > 0 and raw == [(len(transactions),)]
    out = io.StringIO()
    warehouse.query_csv(
        "SELECT count(*) AS n FROM features.customer_snapshot", out, settings, dev=True
    )
    assert out.getvalue() == f"n\n{built[0][0]}\n"
    with pytest.raises(duckdb.Error, match="read-only"):
        warehouse.query_csv(
            "DELETE FROM features.customer_snapshot", io.StringIO(), settings, dev=True
        )
    with connect(settings, read_only=True) as con:
        prod_tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'features' "
            "AND table_catalog = current_database()"
        ).fetchall()
    assert prod_tables == [(0,)], "a dev build wrote to production"

    project = tmp_path / "dbt_project"
    shutil.copytree(settings.dbt_project_dir, project, ignore=shutil.ignore_patterns("target"))
    (project / "models" / "marts" / "into_prod.sql").write_text(
        "{{ config(database='lake', materialized='table') }}\nselect 1 as x\n"
    )
    with pytest.raises(dbt_failures.DbtBuildError, match="read-only"):
        transform.build(
            day,
            settings=settings.model_copy(update={"dbt_project_dir": project}),
            target="dev",
            select="into_prod",
            tests=False,
        )
    with connect(settings, read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'into_prod'"
        ).fetchall() == [(0,)]
    with pytest.raises(ValueError, match="unknown dbt target 'staging'"):
        transform.build("2026-01-02", settings=settings, target="staging")


def test_staging_tests_judge_the_processing_day_so_an_old_bad_value_blocks_no_later_night(
    settings: Settings,
) -> None:
    """A channel outside the declared list on an old day (legacy data, or a list shortened since)
    fails that day's build only; the nights after it build, and a new merchant category only
    warns."""
    old, later = date(2026, 1, 5), date(2026, 1, 6)
    _load(
        settings,
        [
            txn("T1", "C1", "2026-01-05 10:00:00", "20.00", channel="atm"),
            txn("T2", "C1", "2026-01-06 10:00:00", "30.00", category="crypto_atm"),
        ],
        [],
    )
    summary = transform.build(later, settings=settings)
    assert any(
        "accepted_values_stg_transactions_merchant_category" in w for w in summary["warnings"]
    )
    with pytest.raises(dbt_failures.DbtBuildError) as failed:
        transform.build(old, settings=settings)
    assert [f.name for f in failed.value.failures if f.status != "skipped"] == [
        "accepted_values_stg_transactions_channel___var_categories_channel_values_"
    ]


def test_feature_tests_judge_the_rows_the_night_built_so_an_old_bad_row_blocks_no_later_night(
    settings: Settings,
) -> None:
    """The feature models' tests read the rows of their declared day partition (meta.day_partition):
    a night costs its day, not the history. A broken row of an old cutoff (here written by hand)
    is not judged by later nights, and is by the tests of its own day."""
    days = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    _load(
        settings,
        [txn(f"T{d.day}", "C1", f"{d} 10:00:00", "20.00", channel="online") for d in days],
        [],
    )
    for day in days:
        transform.build(day, settings=settings)
    with connect(settings) as con:
        con.execute(
            "UPDATE features.customer_snapshot SET online_share_30d = 2 WHERE cutoff_date = ?",
            [days[0]],
        )
    only_tests = "resource_type:test"
    transform.build(days[-1], settings=settings, select=only_tests)
    with pytest.raises(dbt_failures.DbtBuildError) as failed:
        transform.build(days[0], settings=settings, select=only_tests)
    assert [f.name for f in failed.value.failures] == [
        "expression_is_true_customer_snapshot_online_share_30d__online_share_30d_between_0_and_1"
    ]
