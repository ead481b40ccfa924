"""The synthetic world: categories, countries, fraud patterns, customers and their habits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


_HOME_WEIGHTS, _MERCHANT_WEIGHTS, TRIP_WEIGHTS, FRAUD_ABROAD_WEIGHTS = (
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


MEAN_TX_PER_EVENT = float(
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
(
    POPULATION_STREAM,
    COUNTS_STREAM,
    TRAVEL_STREAM,
    LEGIT_STREAM,
    FRAUD_STREAM,
    FRIENDLY_STREAM,
    IDS_STREAM,
) = range(7)


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


def stream_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


def pick(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Categorical draws by inverse CDF (cheaper than Generator.choice for big arrays)."""
    cum = np.cumsum(weights)
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(size), side="right"), len(cum) - 1)


def pick_rows(rng: np.random.Generator, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
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
    rng = stream_rng(seed, POPULATION_STREAM)
    n_groups = len(COUNTRIES) * len(CATEGORIES)
    n_merchants = max(2 * n_groups, customers // 8)
    # One merchant per (country, category) so every draw finds one, the rest by weight.
    m_country = np.concatenate(
        [
            np.repeat(np.arange(len(COUNTRIES)), len(CATEGORIES)),
            pick(rng, _MERCHANT_WEIGHTS, n_merchants - n_groups),
        ]
    )
    m_category = np.concatenate(
        [
            np.tile(np.arange(len(CATEGORIES)), len(COUNTRIES)),
            pick(rng, CATEGORY_WEIGHTS, n_merchants - n_groups),
        ]
    )
    order = np.lexsort((m_category, m_country))
    m_country, m_category = m_country[order], m_category[order]
    group_size = np.bincount(m_country * len(CATEGORIES) + m_category, minlength=n_groups)
    group_start = np.concatenate([[0], np.cumsum(group_size)[:-1]])
    m_number = rng.permutation(n_merchants)

    home = pick(rng, _HOME_WEIGHTS, customers)
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
    slot_category = pick(rng, CATEGORY_WEIGHTS, customers * PREFERRED_MERCHANTS)
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


def weekday_factor(day: date) -> float:
    return float(WEEKDAY_FACTOR[day.weekday()])


def legit_counts(pop: Population, seed: int, day: date) -> np.ndarray:
    """Legitimate transactions per customer on `day`: Poisson around an overdispersed rate."""
    rng = stream_rng(seed, COUNTS_STREAM, day.toordinal())
    busy = rng.gamma(3.0, 1.0 / 3.0, pop.customers)
    return rng.poisson(pop.rate * weekday_factor(day) * busy)


@lru_cache(maxsize=64)
def legit_total(customers: int, seed: int, day: date) -> int:
    """How many legitimate transactions `day` has: friendly fraud picks among them."""
    return int(legit_counts(population(customers, seed), seed, day).sum())


def _id_offset(seed: int, day: date) -> int:
    state = np.random.SeedSequence([seed, IDS_STREAM, day.toordinal()]).generate_state(2, np.uint32)
    return (int(state[0]) << 32 | int(state[1])) % _ID_MODULUS


def transaction_ids(day: date, counters: np.ndarray, seed: int) -> pa.Array:
    """`t-YYYYMMDD-<10 digits>` from per-day counters; distinct counters give distinct ids."""
    k = np.asarray(counters, dtype=np.uint64)
    number = (k * np.uint64(_ID_MULTIPLIER) + np.uint64(_id_offset(seed, day))) % np.uint64(
        _ID_MODULUS
    )
    return _ids(f"t-{day:%Y%m%d}-", number.astype(np.int64), 10)


def usual_seconds(rng: np.random.Generator, pop: Population, cust: np.ndarray) -> np.ndarray:
    hours = np.mod(pop.hour_center[cust] + pop.hour_sd[cust] * rng.normal(size=len(cust)), 24.0)
    return np.minimum((hours * 3600).astype(np.int64), 86_399)


def channels(
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


def amount_cents(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 100.0), 50, MAX_CENTS).astype(np.int64)


def draw_abroad(rng: np.random.Generator, weights: np.ndarray, home: np.ndarray) -> np.ndarray:
    country = pick(rng, weights, len(home))
    return np.where(country == home, _FALLBACK_ABROAD, country)


def reasons(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    codes = np.array([REASONS.index(code) for code, _ in table])
    return codes[pick(rng, np.array([w for _, w in table]), n)]
