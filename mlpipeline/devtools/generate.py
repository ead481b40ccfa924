"""Demo data generator: writes card transactions and chargebacks to the landing zone as an
upstream producer would (data files first, then a `_SUCCESS` listing them with row counts).

Every day is generated on its own from (seed, day): nothing from earlier days is kept. The
fraud of a day comes from its own random stream, separate from legitimate traffic, so the
chargebacks reported on day D are derived by cheaply regenerating the fraud of the days before D.
Transaction ids are a bijection of a per-day counter, so legitimate and fraudulent rows never
collide although they are drawn from different streams.

Planted fraud patterns (mixed, with legitimate look-alikes as noise): amounts far above the
customer's usual, a country other than the customer's usual one, night-time online purchases of
digital goods / electronics / jewelry, and account takeovers whose activity bursts over 2-4 days.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlpipeline.core import landing
from mlpipeline.core.days import day_range, parse_day
from mlpipeline.core.objectstore import ObjectStore

log = logging.getLogger(__name__)

CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "travel",
    "electronics",
    "fashion",
    "digital_goods",
    "pharmacy",
    "entertainment",
    "jewelry",
)
GROCERY, FUEL, TRAVEL, DIGITAL, PHARMACY = (
    CATEGORIES.index(name) for name in ("grocery", "fuel", "travel", "digital_goods", "pharmacy")
)
# Share of everyday spending per category and price level relative to the customer's typical
# amount: a jewelry purchase is several times a grocery run.
CATEGORY_WEIGHTS = np.array([0.28, 0.19, 0.11, 0.03, 0.06, 0.11, 0.08, 0.06, 0.07, 0.01])
CATEGORY_PRICE = np.array([1.0, 0.8, 1.3, 3.5, 2.5, 1.6, 0.4, 0.6, 0.9, 4.0])
TRAVEL_CATEGORY_WEIGHTS = np.array([0.20, 0.35, 0.05, 0.10, 0.02, 0.10, 0.02, 0.04, 0.11, 0.01])

CHANNELS = ("online", "pos", "contactless")
ONLINE, POS, CONTACTLESS = range(len(CHANNELS))

# (ISO 3166 alpha-2, ISO 4217, share of customers living there, share of merchants there,
# share of legitimate trips going there, share of fraud abroad placed there)
_COUNTRY_TABLE = (
    ("DE", "EUR", 0.240, 0.200, 0.06, 0.00),
    ("FR", "EUR", 0.190, 0.160, 0.12, 0.04),
    ("NL", "EUR", 0.090, 0.080, 0.04, 0.00),
    ("ES", "EUR", 0.140, 0.120, 0.15, 0.06),
    ("IT", "EUR", 0.140, 0.120, 0.15, 0.05),
    ("BE", "EUR", 0.050, 0.045, 0.02, 0.00),
    ("AT", "EUR", 0.050, 0.045, 0.06, 0.00),
    ("PT", "EUR", 0.050, 0.045, 0.08, 0.00),
    ("IE", "EUR", 0.000, 0.010, 0.02, 0.00),
    ("GR", "EUR", 0.000, 0.015, 0.07, 0.03),
    ("FI", "EUR", 0.000, 0.005, 0.01, 0.00),
    ("PL", "PLN", 0.015, 0.020, 0.02, 0.06),
    ("SE", "SEK", 0.010, 0.010, 0.01, 0.00),
    ("DK", "DKK", 0.005, 0.008, 0.01, 0.00),
    ("CZ", "CZK", 0.000, 0.010, 0.02, 0.05),
    ("GB", "GBP", 0.010, 0.030, 0.06, 0.12),
    ("CH", "CHF", 0.010, 0.015, 0.04, 0.00),
    ("US", "USD", 0.000, 0.030, 0.04, 0.22),
    ("TR", "TRY", 0.000, 0.008, 0.02, 0.10),
    ("AE", "AED", 0.000, 0.005, 0.00, 0.08),
    ("TH", "THB", 0.000, 0.004, 0.00, 0.06),
    ("BR", "BRL", 0.000, 0.003, 0.00, 0.12),
    ("CN", "CNY", 0.000, 0.002, 0.00, 0.10),
    ("RO", "RON", 0.000, 0.002, 0.00, 0.06),
)
COUNTRIES = tuple(row[0] for row in _COUNTRY_TABLE)
CURRENCIES = tuple(row[1] for row in _COUNTRY_TABLE)
_HOME_WEIGHTS, _MERCHANT_WEIGHTS, _TRIP_WEIGHTS, _FRAUD_ABROAD_WEIGHTS = (
    np.array([row[i] for row in _COUNTRY_TABLE]) / sum(row[i] for row in _COUNTRY_TABLE)
    for i in range(2, 6)
)
_FALLBACK_ABROAD = COUNTRIES.index("US")  # nobody lives there, so it is abroad for everyone

# Fraud patterns. Per pattern: probability of an event, share of its events placed abroad,
# probability that a transaction is online, and the categories it buys.
PATTERNS = ("amount", "foreign", "night_online", "takeover", "subtle")
AMOUNT, FOREIGN, NIGHT, TAKEOVER, SUBTLE = range(len(PATTERNS))
PATTERN_PROBS = np.array([0.25, 0.22, 0.20, 0.13, 0.20])
PATTERN_ABROAD = np.array([0.25, 1.0, 0.20, 0.25, 0.0])
PATTERN_ONLINE = np.array([0.50, 0.60, 1.00, 0.85, np.nan])  # nan: the customer's own habit
PATTERN_CATEGORIES = np.array(
    [
        [0.05, 0.05, 0, 0.20, 0.25, 0.20, 0.05, 0, 0.05, 0.15],
        [0.10, 0.15, 0.05, 0.10, 0.15, 0.15, 0.10, 0.02, 0.10, 0.08],
        [0, 0, 0, 0.05, 0.25, 0.05, 0.45, 0, 0.10, 0.10],
        [0.10, 0.05, 0, 0.10, 0.20, 0.20, 0.20, 0.02, 0.08, 0.05],
        CATEGORY_WEIGHTS,
    ]
)
# Transactions per event: takeovers last 2-4 days with 2 + Poisson(1.5) transactions a day,
# foreign and night events have 1-3 transactions, the others one.
TAKEOVER_DAYS = (2, 4)
TAKEOVER_DAILY_EXTRA = 1.5
MAX_SPAN_DAYS = TAKEOVER_DAYS[1]
_MEAN_TX_PER_EVENT = float(
    PATTERN_PROBS @ np.array([1.0, 2.0, 2.0, 3.0 * (2 + TAKEOVER_DAILY_EXTRA), 1.0])
)

# Chargebacks: share of fraud that is disputed, the longest delay in days, friendly fraud rate.
CHARGEBACK_SHARE = 0.90
MAX_DELAY_DAYS = 20
FRIENDLY_RATE = 0.0015
FRAUD_REASONS = (("10.4", 0.50), ("4837", 0.30), ("4863", 0.12), ("10.5", 0.08))
FRIENDLY_REASONS = (("13.1", 0.65), ("4863", 0.25), ("10.4", 0.10))
REASONS = ("10.4", "10.5", "13.1", "4837", "4863")

WEEKDAY_FACTOR = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.15, 0.85])  # Monday first
PREFERRED_MERCHANTS = 8
SLOT_WEIGHTS = np.array([0.28, 0.20, 0.15, 0.11, 0.09, 0.07, 0.05, 0.05])
EXPLORE_SHARE = 0.06  # legit transactions at a merchant outside the customer's favourites
ABROAD_ON_TRIP = 0.8
BIG_PURCHASE_SHARE = 0.03
NIGHT_OWL_SHARE = 0.08
MAX_CENTS = 1_500_000  # 15,000 EUR: below ingestion's absurd-amount limit

# Transaction ids: t-YYYYMMDD-<10 digits>, an affine bijection of a per-day counter modulo 10^10.
# Legitimate rows count from 0, fraud from FRAUD_BASE (+ LAG_SPAN per day since its event began).
_ID_MODULUS = 10**10
_ID_MULTIPLIER = 817_504_243  # coprime with 10, so the map is a bijection; A * k fits uint64
FRAUD_BASE = 5 * 10**9
LAG_SPAN = 10**9

# Random streams, each seeded from (seed, stream, day[, part]).
_POPULATION, _COUNTS, _TRAVEL, _LEGIT, _FRAUD, _FRIENDLY, _IDS = range(7)

TRANSACTION_COLUMNS = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "currency",
    "country",
    "channel",
    "event_ts",
)
CHARGEBACK_COLUMNS = ("transaction_id", "reported_at", "reason_code")
FILE_FORMATS = ("csv", "parquet")


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


def _pick(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Categorical draws by inverse CDF (cheaper than Generator.choice for big arrays)."""
    cum = np.cumsum(weights)
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(size), side="right"), len(cum) - 1)


def _pick_rows(rng: np.random.Generator, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Categorical draws where row i uses the weight vector `weights[rows[i]]`."""
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    u = rng.random(len(rows))
    return np.minimum((u[:, None] >= cum[rows]).sum(axis=1), weights.shape[1] - 1)


@dataclass(frozen=True)
class Population:
    """Customers and merchants of one seed; identical for every day so habits persist."""

    home: np.ndarray  # country index per customer
    typical: np.ndarray  # typical amount in EUR
    rate: np.ndarray  # mean transactions a day
    p_online: np.ndarray
    p_contactless: np.ndarray  # of the card-present transactions
    hour_center: np.ndarray
    hour_sd: np.ndarray
    p_trip: np.ndarray  # daily probability of spending the day abroad
    preferred: np.ndarray  # (customers, PREFERRED_MERCHANTS) merchant indexes
    merchant_country: np.ndarray
    merchant_category: np.ndarray
    merchant_number: np.ndarray  # the number in the merchant id
    group_start: np.ndarray  # merchants are sorted by (country, category); group = c * 10 + k
    group_size: np.ndarray
    customer_ids: pa.Array = field(repr=False)
    merchant_ids: pa.Array = field(repr=False)

    @property
    def customers(self) -> int:
        return len(self.home)

    def merchant_in(
        self, rng: np.random.Generator, country: np.ndarray, category: np.ndarray
    ) -> np.ndarray:
        return _merchant_in(self.group_start, self.group_size, rng, country, category)


def _merchant_in(
    group_start: np.ndarray,
    group_size: np.ndarray,
    rng: np.random.Generator,
    country: np.ndarray,
    category: np.ndarray,
) -> np.ndarray:
    """A random merchant of the given country and category, per row."""
    group = country.astype(np.int64) * len(CATEGORIES) + category
    return group_start[group] + (rng.random(len(group)) * group_size[group]).astype(np.int64)


@lru_cache(maxsize=2)
def population(customers: int, seed: int) -> Population:
    """The customers (habits, favourite merchants) and merchants drawn from the seed alone."""
    rng = _rng(seed, _POPULATION)
    n_groups = len(COUNTRIES) * len(CATEGORIES)
    n_merchants = max(2 * n_groups, customers // 8)
    # One merchant per (country, category) so every draw finds one, the rest by weight.
    m_country = np.concatenate(
        [
            np.repeat(np.arange(len(COUNTRIES)), len(CATEGORIES)),
            _pick(rng, _MERCHANT_WEIGHTS, n_merchants - n_groups),
        ]
    )
    m_category = np.concatenate(
        [
            np.tile(np.arange(len(CATEGORIES)), len(COUNTRIES)),
            _pick(rng, CATEGORY_WEIGHTS, n_merchants - n_groups),
        ]
    )
    order = np.lexsort((m_category, m_country))
    m_country, m_category = m_country[order], m_category[order]
    group_size = np.bincount(m_country * len(CATEGORIES) + m_category, minlength=n_groups)
    group_start = np.concatenate([[0], np.cumsum(group_size)[:-1]])
    m_number = rng.permutation(n_merchants)

    home = _pick(rng, _HOME_WEIGHTS, customers)
    owl = rng.random(customers) < NIGHT_OWL_SHARE
    hour_center = np.where(
        owl, rng.uniform(21.0, 25.0, customers), np.clip(rng.normal(14.0, 2.0, customers), 9, 20)
    )
    trips = np.where(rng.random(customers) < 0.3, 0.04, 0.005)
    typical = np.exp(rng.normal(np.log(30.0), 0.6, customers))
    rate = np.exp(rng.uniform(np.log(0.3), np.log(3.0), customers))
    p_online = rng.beta(2.0, 6.0, customers)
    p_contactless = rng.beta(5.0, 3.0, customers)
    hour_sd = rng.uniform(2.0, 3.5, customers)
    slot_home = np.repeat(home, PREFERRED_MERCHANTS)
    slot_category = _pick(rng, CATEGORY_WEIGHTS, customers * PREFERRED_MERCHANTS)
    preferred = _merchant_in(group_start, group_size, rng, slot_home, slot_category)
    pop = Population(
        home=home,
        typical=typical,
        rate=rate,
        p_online=p_online,
        p_contactless=p_contactless,
        hour_center=hour_center,
        hour_sd=hour_sd,
        p_trip=trips,
        preferred=preferred.reshape(customers, PREFERRED_MERCHANTS),
        merchant_country=m_country,
        merchant_category=m_category,
        merchant_number=m_number,
        group_start=group_start,
        group_size=group_size,
        customer_ids=_ids("c", np.arange(customers), 6),
        merchant_ids=_ids("m", m_number, 5),
    )
    for value in vars(pop).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return pop


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _weekday_factor(day: date) -> float:
    return float(WEEKDAY_FACTOR[day.weekday()])


def _legit_counts(pop: Population, seed: int, day: date) -> np.ndarray:
    """Legitimate transactions per customer on `day`: Poisson around an overdispersed rate."""
    rng = _rng(seed, _COUNTS, day.toordinal())
    busy = rng.gamma(3.0, 1.0 / 3.0, pop.customers)
    return rng.poisson(pop.rate * _weekday_factor(day) * busy)


@lru_cache(maxsize=64)
def _legit_total(customers: int, seed: int, day: date) -> int:
    """How many legitimate transactions `day` has: friendly fraud picks among them."""
    return int(_legit_counts(population(customers, seed), seed, day).sum())


def _id_offset(seed: int, day: date) -> int:
    state = np.random.SeedSequence([seed, _IDS, day.toordinal()]).generate_state(2, np.uint32)
    return (int(state[0]) << 32 | int(state[1])) % _ID_MODULUS


def transaction_ids(day: date, counters: np.ndarray, seed: int) -> pa.Array:
    """`t-YYYYMMDD-<10 digits>` from per-day counters; distinct counters give distinct ids."""
    k = np.asarray(counters, dtype=np.uint64)
    number = (k * np.uint64(_ID_MULTIPLIER) + np.uint64(_id_offset(seed, day))) % np.uint64(
        _ID_MODULUS
    )
    return _ids(f"t-{day:%Y%m%d}-", number.astype(np.int64), 10)


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


def _usual_seconds(rng: np.random.Generator, pop: Population, cust: np.ndarray) -> np.ndarray:
    hours = np.mod(pop.hour_center[cust] + pop.hour_sd[cust] * rng.normal(size=len(cust)), 24.0)
    return np.minimum((hours * 3600).astype(np.int64), 86_399)


def _channels(
    rng: np.random.Generator,
    pop: Population,
    cust: np.ndarray,
    category: np.ndarray,
    p_online: np.ndarray,
) -> np.ndarray:
    """Online with probability p (always for digital goods, never for fuel), else card-present."""
    p = np.where(category == TRAVEL, np.maximum(p_online, 0.7), p_online)
    p = np.where(np.isin(category, (GROCERY, PHARMACY)), p * 0.4, p)
    online = (rng.random(len(cust)) < p) | (category == DIGITAL)
    online &= category != FUEL
    tap = rng.random(len(cust)) < pop.p_contactless[cust]
    return np.where(online, ONLINE, np.where(tap, CONTACTLESS, POS)).astype(np.int8)


def _amount_cents(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 100.0), 50, MAX_CENTS).astype(np.int64)


def _abroad(rng: np.random.Generator, weights: np.ndarray, home: np.ndarray) -> np.ndarray:
    country = _pick(rng, weights, len(home))
    return np.where(country == home, _FALLBACK_ABROAD, country)


def _reasons(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    codes = np.array([REASONS.index(code) for code, _ in table])
    return codes[_pick(rng, np.array([w for _, w in table]), n)]


@lru_cache(maxsize=64)
def _fraud_started(customers: int, seed: int, fraud_rate: float, day: date) -> FraudEvents:
    """Fraud events beginning on `day`, from their own stream (no legit traffic needed)."""
    pop = population(customers, seed)
    rng = _rng(seed, _FRAUD, day.toordinal())
    expected_tx = fraud_rate / (1.0 - fraud_rate) * float(pop.rate.sum()) * _weekday_factor(day)
    n_events = int(rng.poisson(expected_tx / _MEAN_TX_PER_EVENT)) if customers else 0
    victim = rng.integers(0, max(customers, 1), n_events)
    pattern = _pick(rng, PATTERN_PROBS, n_events)
    span = np.where(
        pattern == TAKEOVER, rng.integers(TAKEOVER_DAYS[0], TAKEOVER_DAYS[1] + 1, n_events), 1
    )
    abroad = rng.random(n_events) < PATTERN_ABROAD[pattern]
    country = np.where(abroad, _abroad(rng, _FRAUD_ABROAD_WEIGHTS, pop.home[victim]), 0)

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
    category = _pick_rows(rng, PATTERN_CATEGORIES, pat)
    where = np.where(abroad[ev], country[ev], pop.home[cust])
    merchant = pop.merchant_in(rng, where, category)
    p_online = np.where(np.isnan(PATTERN_ONLINE[pat]), pop.p_online[cust], PATTERN_ONLINE[pat])
    channel = _channels(rng, pop, cust, category, p_online)
    night = (pat == NIGHT) | ((pat == TAKEOVER) & (rng.random(n) < 0.35))
    second = np.where(night, rng.integers(0, 5 * 3600, n), _usual_seconds(rng, pop, cust))
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
    cents = _amount_cents(pop.typical[cust] * CATEGORY_PRICE[category] * noise * boost)
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
        reason=_reasons(rng, FRAUD_REASONS, n),
    )
    for value in vars(events).values():
        value.flags.writeable = False
    return events


@dataclass(frozen=True)
class _DayFraud:
    """The fraudulent transactions on one day, sorted by customer, with their id counters."""

    counter: np.ndarray
    customer: np.ndarray
    pattern: np.ndarray
    merchant: np.ndarray
    cents: np.ndarray
    channel: np.ndarray
    second: np.ndarray


def _fraud_on(customers: int, seed: int, fraud_rate: float, day: date) -> _DayFraud:
    parts = []
    for lag in range(MAX_SPAN_DAYS):
        ev = _fraud_started(customers, seed, fraud_rate, day - timedelta(days=lag))
        rows = np.flatnonzero(ev.offset == lag)
        parts.append((FRAUD_BASE + lag * LAG_SPAN + rows, ev, rows))
    counter = np.concatenate([p[0] for p in parts])
    columns = {
        name: np.concatenate([getattr(ev, name)[rows] for _, ev, rows in parts])
        for name in ("customer", "pattern", "merchant", "cents", "channel", "second")
    }
    order = np.argsort(columns["customer"], kind="stable")
    return _DayFraud(counter=counter[order], **{k: v[order] for k, v in columns.items()})


def fraud_transactions(
    day: str | date, *, customers: int = 2000, seed: int = 7, fraud_rate: float = 0.012
) -> pa.Table:
    """Ground truth of a generated day: its fraudulent transaction ids and planted pattern."""
    day = parse_day(day)
    fraud = _fraud_on(customers, seed, fraud_rate, day)
    return pa.table(
        {
            "transaction_id": transaction_ids(day, fraud.counter, seed),
            "customer_id": population(customers, seed).customer_ids.take(pa.array(fraud.customer)),
            "pattern": pa.array(PATTERNS).take(pa.array(fraud.pattern)),
        }
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
class _DayPlan:
    """Per-customer row counts of a day: lets any slice of rows be generated on its own."""

    legit: np.ndarray
    legit_start: np.ndarray
    fraud_start: np.ndarray
    row_count: np.ndarray
    row_end: np.ndarray
    trip: np.ndarray  # destination country index, -1 when at home
    fraud: _DayFraud


def _plan(pop: Population, seed: int, fraud_rate: float, day: date) -> _DayPlan:
    legit = _legit_counts(pop, seed, day)
    fraud = _fraud_on(pop.customers, seed, fraud_rate, day)
    fraud_count = np.bincount(fraud.customer, minlength=pop.customers)
    rng = _rng(seed, _TRAVEL, day.toordinal())
    on_trip = rng.random(pop.customers) < pop.p_trip
    trip = np.where(on_trip, _abroad(rng, _TRIP_WEIGHTS, pop.home), -1)
    row_count = legit + fraud_count
    return _DayPlan(
        legit=legit,
        legit_start=np.cumsum(legit) - legit,
        fraud_start=np.cumsum(fraud_count) - fraud_count,
        row_count=row_count,
        row_end=np.cumsum(row_count),
        trip=trip,
        fraud=fraud,
    )


def _transactions_part(
    pop: Population,
    seed: int,
    day: date,
    part: int,
    rows: tuple[int, int],
    plan: _DayPlan,
    file_format: str,
) -> pa.Table:
    """Rows [start, stop) of the day (ordered by customer, legit before fraud), sorted by time."""
    rng = _rng(seed, _LEGIT, day.toordinal(), part)
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
    slot = _pick(rng, SLOT_WEIGHTS, len(li))
    random_category = np.where(
        away,
        _pick(rng, TRAVEL_CATEGORY_WEIGHTS, len(li)),
        _pick(rng, CATEGORY_WEIGHTS, len(li)),
    )
    random_merchant = pop.merchant_in(
        rng, np.where(away, plan.trip[lc], pop.home[lc]), random_category
    )
    m = np.where(away | explore, random_merchant, pop.preferred[lc, slot])
    category = pop.merchant_category[m]
    merchant[li] = m
    channel[li] = _channels(rng, pop, lc, category, pop.p_online[lc])
    second[li] = _usual_seconds(rng, pop, lc)
    big = np.where(rng.random(len(li)) < BIG_PURCHASE_SHARE, rng.uniform(2.5, 8.0, len(li)), 1.0)
    noise = np.exp(rng.normal(0.0, 0.45, len(li)))
    cents[li] = _amount_cents(pop.typical[lc] * CATEGORY_PRICE[category] * noise * big)

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


def _chargebacks(
    customers: int, seed: int, fraud_rate: float, day: date, history_start: date
) -> pa.Table:
    """Chargebacks reported on `day`: disputed fraud plus friendly fraud of the days before."""
    first = day - timedelta(days=MAX_DELAY_DAYS + MAX_SPAN_DAYS - 1)
    ids: list[pa.Array] = []
    report_second: list[np.ndarray] = []
    reason: list[np.ndarray] = []
    for start in day_range(first, day - timedelta(days=1)):
        ev = _fraud_started(customers, seed, fraud_rate, start)
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
        total = _legit_total(customers, seed, txn_day)
        rng = _rng(seed, _FRIENDLY, txn_day.toordinal())
        n = int(rng.binomial(total, FRIENDLY_RATE))
        counters = np.sort(rng.choice(total, n, replace=False)) if n else np.zeros(0, np.int64)
        delay = 2 + np.minimum(np.floor(rng.gamma(2.0, 3.0, n)), MAX_DELAY_DAYS - 2)
        seconds = rng.integers(6 * 3600, 23 * 3600, n)
        codes = _reasons(rng, FRIENDLY_REASONS, n)
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


def _write_table(table: pa.Table, path: Path, file_format: str) -> None:
    if file_format == "csv":
        # pyarrow quotes header names; producers commonly write a plain header, so do that.
        with path.open("wb") as handle:
            handle.write((",".join(table.column_names) + "\n").encode())
            options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
            pa_csv.write_csv(table, handle, options)
    else:
        pq.write_table(table, path, compression="zstd")


def _land(
    store: ObjectStore,
    dataset: str,
    day: date,
    tables: Iterable[pa.Table],
    file_format: str,
    tmp: Path,
) -> list[str]:
    """Deliver a dataset-day like a producer: parts first, then `_SUCCESS` listing them.

    The old `_SUCCESS` goes first so a reader never pairs it with new parts; parts of an earlier
    delivery that this one does not list are removed before the new `_SUCCESS` is written.
    """
    folder = landing.day_prefix(dataset, day)
    store.delete(landing.success_key(dataset, day))
    parts: list[tuple[str, int]] = []
    for table in tables:
        if not table.num_rows:
            continue
        name = f"part-{len(parts):05d}.{'csv' if file_format == 'csv' else 'parquet'}"
        path = tmp / name
        _write_table(table, path, file_format)
        store.put_file(folder + name, path)
        path.unlink()
        parts.append((name, table.num_rows))
    listed = {name for name, _ in parts}
    for key in store.list(folder):
        if key.rsplit("/", 1)[-1] not in listed:
            store.delete(key)
    landing.write_success(
        store, dataset, day, [landing.DeclaredFile(name, rows) for name, rows in parts]
    )
    return [folder + name for name, _ in parts] + [landing.success_key(dataset, day)]


def _land_transactions(
    store: ObjectStore,
    day: date,
    pop: Population,
    plan: _DayPlan,
    seed: int,
    rows_per_file: int,
    file_format: str,
    tmp: Path,
) -> list[str]:
    """The day's transactions in files of `rows_per_file`, generated one file at a time."""
    total = int(plan.row_end[-1]) if pop.customers else 0
    n_files = -(-total // rows_per_file)
    began = time.monotonic()

    def parts() -> Iterator[pa.Table]:
        for part in range(n_files):
            rows = (part * rows_per_file, min(total, (part + 1) * rows_per_file))
            yield _transactions_part(pop, seed, day, part, rows, plan, file_format)
            rate = rows[1] / max(time.monotonic() - began, 1e-9)
            log.info(
                "transactions dt=%s: part %d/%d (%d of %d rows, %.0f rows/s, ~%.1fs left)",
                day,
                part + 1,
                n_files,
                rows[1],
                total,
                rate,
                (total - rows[1]) / rate,
            )

    return _land(store, "transactions", day, parts(), file_format, tmp)


def _first_landed_day(store: ObjectStore) -> date | None:
    """The earliest day whose transactions delivery is complete (has `_SUCCESS`)."""
    days = [
        parse_day(key.split("dt=", 1)[1])
        for key in store.list("landing/transactions/dt=")
        if key.endswith("/_SUCCESS")
    ]
    return min(days, default=None)


def _check_args(customers: int, seed: int, fraud_rate: float, rows_per_file: int, fmt: str) -> None:
    if customers < 0:
        raise ValueError(f"customers must be >= 0 (0 writes an empty day), got {customers}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5), got {fraud_rate}")
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    if fmt not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {fmt!r}")


def generate_day(
    store: ObjectStore,
    day: str | date,
    *,
    customers: int = 2000,
    seed: int = 7,
    fraud_rate: float = 0.012,
    rows_per_file: int = 500_000,
    file_format: str = "csv",
    history_start: str | date | None = None,
) -> dict[str, Any]:
    """Land the transactions of `day` and the chargebacks reported on `day`.

    Same arguments, same bytes. `customers=0` lands an empty day (`_SUCCESS` listing no files).
    Chargebacks are only reported for transactions on or after `history_start`, the first day
    this producer delivered, so every chargeback refers to a landed transaction. By default it
    is the earliest day already landed in `store` (or `day` in an empty store), which keeps a
    history extended day by day consistent with one generated in a single range.
    """
    _check_args(customers, seed, fraud_rate, rows_per_file, file_format)
    day = parse_day(day)
    if history_start is None:
        first_day = min(day, _first_landed_day(store) or day)
    else:
        first_day = parse_day(history_start)
        if day < first_day:
            raise ValueError(
                f"day {day} is before history_start {first_day}: pass an earlier history_start "
                "or none (then it is the earliest day already landed)"
            )
    began = time.monotonic()
    pop = population(customers, seed)
    plan = _plan(pop, seed, fraud_rate, day)
    with tempfile.TemporaryDirectory(prefix="generate-") as tmp:
        tx_keys = _land_transactions(
            store, day, pop, plan, seed, rows_per_file, file_format, Path(tmp)
        )
        chargebacks = _chargebacks(customers, seed, fraud_rate, day, first_day)
        cb_keys = _land(store, "chargebacks", day, [chargebacks], file_format, Path(tmp))
    seconds = time.monotonic() - began
    summary = {
        "day": day.isoformat(),
        "transactions": int(plan.row_end[-1]) if customers else 0,
        "fraud_transactions": len(plan.fraud.counter),
        "chargebacks": chargebacks.num_rows,
        "history_start": first_day.isoformat(),
        "keys": tx_keys + cb_keys,
        "seconds": round(seconds, 3),
    }
    log.info(
        "generated dt=%s: %d transactions (%d fraud), %d chargebacks in %.1fs",
        day,
        summary["transactions"],
        summary["fraud_transactions"],
        summary["chargebacks"],
        seconds,
    )
    return summary


def generate_range(
    store: ObjectStore, start: str | date, end: str | date, **kw: Any
) -> list[dict[str, Any]]:
    """Land every day from `start` to `end` inclusive, oldest first (see `generate_day`)."""
    start, end = parse_day(start), parse_day(end)
    days = day_range(start, end)
    began = time.monotonic()
    summaries = []
    for i, day in enumerate(days, 1):
        summaries.append(generate_day(store, day, **kw))
        elapsed = time.monotonic() - began
        log.info(
            "generated %d/%d days (%.1fs elapsed, ~%.0fs left)",
            i,
            len(days),
            elapsed,
            elapsed / i * (len(days) - i),
        )
    return summaries
