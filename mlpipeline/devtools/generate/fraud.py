"""Fraud events, drawn per day from their own stream: later days regenerate them cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pyarrow as pa

from mlpipeline.core.days import parse_day
from mlpipeline.devtools.generate.world import (
    AMOUNT,
    CATEGORY_PRICE,
    CHARGEBACK_SHARE,
    FOREIGN,
    FRAUD_ABROAD_WEIGHTS,
    FRAUD_BASE,
    FRAUD_REASONS,
    FRAUD_STREAM,
    LAG_SPAN,
    MAX_DELAY_DAYS,
    MAX_SPAN_DAYS,
    MEAN_TX_PER_EVENT,
    NIGHT,
    PATTERN_ABROAD,
    PATTERN_CATEGORIES,
    PATTERN_ONLINE,
    PATTERN_PROBS,
    PATTERNS,
    TAKEOVER,
    TAKEOVER_DAILY_EXTRA,
    TAKEOVER_DAYS,
    amount_cents,
    channels,
    draw_abroad,
    pick,
    pick_rows,
    population,
    reasons,
    stream_rng,
    transaction_ids,
    usual_seconds,
    weekday_factor,
)


@dataclass(frozen=True)
class FraudEvents:
    """Fraudulent transactions of the events that began on one day (row = counter offset)."""

    customer: np.ndarray
    offset: np.ndarray  # days after the start day
    pattern: np.ndarray
    merchant: np.ndarray
    cents: np.ndarray
    channel: np.ndarray
    second: np.ndarray  # second of its day
    disputed: np.ndarray
    delay: np.ndarray  # days from the transaction's day to its chargeback
    report_second: np.ndarray
    reason: np.ndarray  # index into REASONS


@lru_cache(maxsize=64)
def fraud_started(customers: int, seed: int, fraud_rate: float, day: date) -> FraudEvents:
    """Fraud events beginning on `day`, from their own stream (no legit traffic needed)."""
    pop = population(customers, seed)
    rng = stream_rng(seed, FRAUD_STREAM, day.toordinal())
    expected_tx = fraud_rate / (1.0 - fraud_rate) * float(pop.rate.sum()) * weekday_factor(day)
    n_events = int(rng.poisson(expected_tx / MEAN_TX_PER_EVENT)) if customers else 0
    victim = rng.integers(0, max(customers, 1), n_events)
    pattern = pick(rng, PATTERN_PROBS, n_events)
    span = np.where(
        pattern == TAKEOVER, rng.integers(TAKEOVER_DAYS[0], TAKEOVER_DAYS[1] + 1, n_events), 1
    )
    abroad = rng.random(n_events) < PATTERN_ABROAD[pattern]
    country = np.where(abroad, draw_abroad(rng, FRAUD_ABROAD_WEIGHTS, pop.home[victim]), 0)

    # Event-days, then transactions.
    ev = np.repeat(np.arange(n_events), span)
    offset = np.arange(len(ev)) - np.repeat(np.cumsum(span) - span, span)
    per_day = np.where(
        pattern[ev] == TAKEOVER,
        2 + rng.poisson(TAKEOVER_DAILY_EXTRA, len(ev)),
        np.where(np.isin(pattern[ev], (FOREIGN, NIGHT)), 1 + rng.binomial(2, 0.5, len(ev)), 1),
    )
    ev, offset = np.repeat(ev, per_day), np.repeat(offset, per_day)
    n = len(ev)
    cust, pat = victim[ev], pattern[ev]
    category = pick_rows(rng, PATTERN_CATEGORIES, pat)
    where = np.where(abroad[ev], country[ev], pop.home[cust])
    merchant = pop.merchant_in(rng, where, category)
    p_online = np.where(np.isnan(PATTERN_ONLINE[pat]), pop.p_online[cust], PATTERN_ONLINE[pat])
    channel = channels(rng, pop, cust, category, p_online)
    night = (pat == NIGHT) | ((pat == TAKEOVER) & (rng.random(n) < 0.35))
    second = np.where(night, rng.integers(0, 5 * 3600, n), usual_seconds(rng, pop, cust))
    boost = np.select(
        [
            pat == AMOUNT,
            (pat == FOREIGN) & (rng.random(n) < 0.4),
            pat == NIGHT,
            (pat == TAKEOVER) & (offset == 0),
            pat == TAKEOVER,
        ],
        [
            rng.uniform(2.5, 8.0, n),
            rng.uniform(2.0, 6.0, n),
            rng.uniform(1.5, 4.0, n),
            rng.uniform(0.3, 1.2, n),
            rng.uniform(1.5, 5.0, n),
        ],
        1.0,
    )
    noise = np.exp(rng.normal(0.0, 0.45, n))
    cents = amount_cents(pop.typical[cust] * CATEGORY_PRICE[category] * noise * boost)
    disputed = rng.random(n) < CHARGEBACK_SHARE
    # Right-skewed delay: most disputes within a week, a tail up to MAX_DELAY_DAYS.
    delay = 1 + np.minimum(np.floor(rng.gamma(1.6, 3.5, n)), MAX_DELAY_DAYS - 1).astype(np.int64)
    events = FraudEvents(
        customer=cust,
        offset=offset,
        pattern=pat,
        merchant=merchant,
        cents=cents,
        channel=channel,
        second=second.astype(np.int64),
        disputed=disputed,
        delay=delay,
        report_second=rng.integers(6 * 3600, 23 * 3600, n),
        reason=reasons(rng, FRAUD_REASONS, n),
    )
    for value in vars(events).values():
        value.flags.writeable = False
    return events


@dataclass(frozen=True)
class DayFraud:
    """The fraudulent transactions on one day, sorted by customer, with their id counters."""

    counter: np.ndarray
    customer: np.ndarray
    pattern: np.ndarray
    merchant: np.ndarray
    cents: np.ndarray
    channel: np.ndarray
    second: np.ndarray


def fraud_on(customers: int, seed: int, fraud_rate: float, day: date) -> DayFraud:
    parts = []
    for lag in range(MAX_SPAN_DAYS):
        ev = fraud_started(customers, seed, fraud_rate, day - timedelta(days=lag))
        rows = np.flatnonzero(ev.offset == lag)
        parts.append((FRAUD_BASE + lag * LAG_SPAN + rows, ev, rows))
    counter = np.concatenate([p[0] for p in parts])
    columns = {
        name: np.concatenate([getattr(ev, name)[rows] for _, ev, rows in parts])
        for name in ("customer", "pattern", "merchant", "cents", "channel", "second")
    }
    order = np.argsort(columns["customer"], kind="stable")
    return DayFraud(counter=counter[order], **{k: v[order] for k, v in columns.items()})


def fraud_transactions(
    day: str | date, *, customers: int = 2000, seed: int = 7, fraud_rate: float = 0.012
) -> pa.Table:
    """Ground truth of a generated day: its fraudulent transaction ids and planted pattern."""
    day = parse_day(day)
    fraud = fraud_on(customers, seed, fraud_rate, day)
    return pa.table(
        {
            "transaction_id": transaction_ids(day, fraud.counter, seed),
            "customer_id": population(customers, seed).customer_ids.take(pa.array(fraud.customer)),
            "pattern": pa.array(PATTERNS).take(pa.array(fraud.pattern)),
        }
    )
