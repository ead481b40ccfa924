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

from mlpipeline.devtools.generate.fraud import FraudEvents, fraud_transactions
from mlpipeline.devtools.generate.producer import generate_day, generate_range
from mlpipeline.devtools.generate.world import (
    CHARGEBACK_COLUMNS,
    FILE_FORMATS,
    MAX_DELAY_DAYS,
    TRANSACTION_COLUMNS,
    population,
)

__all__ = [
    "CHARGEBACK_COLUMNS",
    "FILE_FORMATS",
    "FraudEvents",
    "MAX_DELAY_DAYS",
    "TRANSACTION_COLUMNS",
    "fraud_transactions",
    "generate_day",
    "generate_range",
    "population",
]
