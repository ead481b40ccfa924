"""A day's transaction and chargeback rows, as the producer's files hold them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpipeline.core.days import day_range
from mlpipeline.devtools.generate.fraud import DayFraud, fraud_on, fraud_started
from mlpipeline.devtools.generate.world import (
    ABROAD_ON_TRIP,
    BIG_PURCHASE_SHARE,
    CATEGORIES,
    CATEGORY_PRICE,
    CATEGORY_WEIGHTS,
    CHANNELS,
    CHARGEBACK_COLUMNS,
    COUNTRIES,
    CURRENCIES,
    EXPLORE_SHARE,
    FRAUD_BASE,
    FRIENDLY_RATE,
    FRIENDLY_REASONS,
    FRIENDLY_STREAM,
    LAG_SPAN,
    LEGIT_STREAM,
    MAX_DELAY_DAYS,
    MAX_SPAN_DAYS,
    REASONS,
    SLOT_WEIGHTS,
    TRANSACTION_COLUMNS,
    TRAVEL_CATEGORY_WEIGHTS,
    TRAVEL_STREAM,
    TRIP_WEIGHTS,
    Population,
    amount_cents,
    channels,
    draw_abroad,
    legit_counts,
    legit_total,
    pick,
    reasons,
    stream_rng,
    transaction_ids,
    usual_seconds,
)


# Pre-rendered text pieces: formatting by lookup is ~5x faster than pyarrow's strftime.
@lru_cache(maxsize=1)
def _clock_strings() -> pa.Array:
    return pa.array([f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86_400)])


@lru_cache(maxsize=1)
def _cent_strings() -> pa.Array:
    return pa.array([f".{c:02d}" for c in range(100)])


def _timestamps(day: date, seconds: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        day.isoformat(), _clock_strings().take(pa.array(seconds)), ""
    )


def _amount_text(cents: np.ndarray) -> pa.Array:
    euros = pc.cast(pa.array(cents // 100), pa.string())
    return pc.binary_join_element_wise(euros, _cent_strings().take(pa.array(cents % 100)), "")


def _amount_decimal(cents: np.ndarray) -> pa.Array:
    """decimal(18,2) built from the unscaled cents (little-endian 128-bit, non-negative)."""
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words)])


def _take(values: Sequence[str], index: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(index))


@dataclass(frozen=True)
class DayPlan:
    """Per-customer row counts of a day: lets any slice of rows be generated on its own."""

    legit: np.ndarray
    legit_start: np.ndarray
    fraud_start: np.ndarray
    row_count: np.ndarray
    row_end: np.ndarray
    trip: np.ndarray  # destination country index, -1 when at home
    fraud: DayFraud


def day_plan(pop: Population, seed: int, fraud_rate: float, day: date) -> DayPlan:
    legit = legit_counts(pop, seed, day)
    fraud = fraud_on(pop.customers, seed, fraud_rate, day)
    fraud_count = np.bincount(fraud.customer, minlength=pop.customers)
    rng = stream_rng(seed, TRAVEL_STREAM, day.toordinal())
    on_trip = rng.random(pop.customers) < pop.p_trip
    trip = np.where(on_trip, draw_abroad(rng, TRIP_WEIGHTS, pop.home), -1)
    row_count = legit + fraud_count
    return DayPlan(
        legit=legit,
        legit_start=np.cumsum(legit) - legit,
        fraud_start=np.cumsum(fraud_count) - fraud_count,
        row_count=row_count,
        row_end=np.cumsum(row_count),
        trip=trip,
        fraud=fraud,
    )


def transactions_part(
    pop: Population,
    seed: int,
    day: date,
    part: int,
    rows: tuple[int, int],
    plan: DayPlan,
    file_format: str,
) -> pa.Table:
    """Rows [start, stop) of the day (ordered by customer, legit before fraud), sorted by time."""
    rng = stream_rng(seed, LEGIT_STREAM, day.toordinal(), part)
    pos = np.arange(*rows, dtype=np.int64)
    cust = np.searchsorted(plan.row_end, pos, side="right")
    within = pos - (plan.row_end[cust] - plan.row_count[cust])
    legit = within < plan.legit[cust]
    li = np.flatnonzero(legit)
    fi = plan.fraud_start[cust[~legit]] + within[~legit] - plan.legit[cust[~legit]]
    n, lc = len(pos), cust[li]

    counter = np.empty(n, dtype=np.int64)
    merchant = np.empty(n, dtype=np.int64)
    cents = np.empty(n, dtype=np.int64)
    channel = np.empty(n, dtype=np.int8)
    second = np.empty(n, dtype=np.int64)

    counter[li] = plan.legit_start[lc] + within[li]
    away = (plan.trip[lc] >= 0) & (rng.random(len(li)) < ABROAD_ON_TRIP)
    explore = rng.random(len(li)) < EXPLORE_SHARE
    slot = pick(rng, SLOT_WEIGHTS, len(li))
    random_category = np.where(
        away,
        pick(rng, TRAVEL_CATEGORY_WEIGHTS, len(li)),
        pick(rng, CATEGORY_WEIGHTS, len(li)),
    )
    random_merchant = pop.merchant_in(
        rng, np.where(away, plan.trip[lc], pop.home[lc]), random_category
    )
    m = np.where(away | explore, random_merchant, pop.preferred[lc, slot])
    category = pop.merchant_category[m]
    merchant[li] = m
    channel[li] = channels(rng, pop, lc, category, pop.p_online[lc])
    second[li] = usual_seconds(rng, pop, lc)
    big = np.where(rng.random(len(li)) < BIG_PURCHASE_SHARE, rng.uniform(2.5, 8.0, len(li)), 1.0)
    noise = np.exp(rng.normal(0.0, 0.45, len(li)))
    cents[li] = amount_cents(pop.typical[lc] * CATEGORY_PRICE[category] * noise * big)

    fraud_rows = np.flatnonzero(~legit)
    counter[fraud_rows] = plan.fraud.counter[fi]
    merchant[fraud_rows] = plan.fraud.merchant[fi]
    cents[fraud_rows] = plan.fraud.cents[fi]
    channel[fraud_rows] = plan.fraud.channel[fi]
    second[fraud_rows] = plan.fraud.second[fi]

    order = np.lexsort((counter, second))
    cust, counter, merchant = cust[order], counter[order], merchant[order]
    country = pop.merchant_country[merchant]
    amount = _amount_text if file_format == "csv" else _amount_decimal
    columns = [
        transaction_ids(day, counter, seed),
        pop.customer_ids.take(pa.array(cust)),
        pop.merchant_ids.take(pa.array(merchant)),
        _take(CATEGORIES, pop.merchant_category[merchant]),
        amount(cents[order]),
        _take(CURRENCIES, country),
        _take(COUNTRIES, country),
        _take(CHANNELS, channel[order]),
        _timestamps(day, second[order]),
    ]
    return pa.table(dict(zip(TRANSACTION_COLUMNS, columns, strict=True)))


def chargeback_rows(
    customers: int, seed: int, fraud_rate: float, day: date, history_start: date
) -> pa.Table:
    """Chargebacks reported on `day`: disputed fraud plus friendly fraud of the days before."""
    first = day - timedelta(days=MAX_DELAY_DAYS + MAX_SPAN_DAYS - 1)
    ids: list[pa.Array] = []
    report_second: list[np.ndarray] = []
    reason: list[np.ndarray] = []
    for start in day_range(first, day - timedelta(days=1)):
        ev = fraud_started(customers, seed, fraud_rate, start)
        for lag in np.unique(ev.offset):
            txn_day = start + timedelta(days=int(lag))
            if not history_start <= txn_day < day:
                continue
            rows = np.flatnonzero(
                (ev.offset == lag) & ev.disputed & (ev.delay == (day - txn_day).days)
            )
            ids.append(transaction_ids(txn_day, FRAUD_BASE + lag * LAG_SPAN + rows, seed))
            report_second.append(ev.report_second[rows])
            reason.append(ev.reason[rows])
    for txn_day in day_range(day - timedelta(days=MAX_DELAY_DAYS), day - timedelta(days=1)):
        if txn_day < history_start:
            continue
        total = legit_total(customers, seed, txn_day)
        rng = stream_rng(seed, FRIENDLY_STREAM, txn_day.toordinal())
        n = int(rng.binomial(total, FRIENDLY_RATE))
        counters = np.sort(rng.choice(total, n, replace=False)) if n else np.zeros(0, np.int64)
        delay = 2 + np.minimum(np.floor(rng.gamma(2.0, 3.0, n)), MAX_DELAY_DAYS - 2)
        seconds = rng.integers(6 * 3600, 23 * 3600, n)
        codes = reasons(rng, FRIENDLY_REASONS, n)
        rows = np.flatnonzero(delay == (day - txn_day).days)
        ids.append(transaction_ids(txn_day, counters[rows], seed))
        report_second.append(seconds[rows])
        reason.append(codes[rows])
    if not ids:
        return pa.table({name: pa.array([], pa.string()) for name in CHARGEBACK_COLUMNS})
    columns = [
        pa.concat_arrays(ids),
        _timestamps(day, np.concatenate(report_second)),
        _take(REASONS, np.concatenate(reason)),
    ]
    table = pa.table(dict(zip(CHARGEBACK_COLUMNS, columns, strict=True)))
    return table.sort_by([("reported_at", "ascending"), ("transaction_id", "ascending")])
