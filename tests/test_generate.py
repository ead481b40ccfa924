"""The demo generator lands data exactly as the landing contract says, deterministically, with
fraud a model can learn from snapshot features and the transaction's own fields."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from mlpipeline.core.days import day_range
from mlpipeline.core.objectstore import LocalStore, ObjectStore
from mlpipeline.devtools import generate

START = date(2026, 1, 1)
END = date(2026, 2, 14)
CUSTOMERS = 1000
EURO = {"DE", "FR", "NL", "ES", "IT", "BE", "AT", "PT", "IE", "GR", "FI"}
ISO_4217 = {"EUR", "GBP", "USD", "CHF", "SEK", "DKK", "PLN", "CZK", "TRY", "AED", "THB", "BRL"}
ISO_4217 |= {"CNY", "RON"}


def _read(store: ObjectStore, key: str) -> pa.Table:
    """A landed file with every column as text, as ingestion first sees it."""
    data = store.get_bytes(key)
    if key.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
        return table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
    names = data.split(b"\n", 1)[0].decode().split(",")
    options = pa_csv.ConvertOptions(column_types={name: pa.string() for name in names})
    return pa_csv.read_csv(io.BytesIO(data), convert_options=options)


def _success(store: ObjectStore, dataset: str, day: date) -> dict:
    return json.loads(store.get_bytes(f"landing/{dataset}/dt={day}/_SUCCESS"))


def _landed(store: ObjectStore, dataset: str, days: list[date]) -> pa.Table:
    """Every file listed by the days' `_SUCCESS`, plus the day as column `dt`."""
    tables: list[pa.Table] = []
    for day in days:
        folder = f"landing/{dataset}/dt={day}/"
        for entry in _success(store, dataset, day)["files"]:
            table = _read(store, folder + entry["name"])
            tables.append(table.append_column("dt", pa.array([day] * table.num_rows)))
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """45 generated days loaded into DuckDB, with the generator's ground truth of fraud."""
    store = LocalStore(tmp_path_factory.mktemp("history"))
    generate.generate_range(store, START, END, customers=CUSTOMERS)
    con = duckdb.connect(str(tmp_path_factory.mktemp("db") / "history.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    days = day_range(START, END)
    tx = _landed(store, "transactions", days)
    cb = _landed(store, "chargebacks", days)
    truth = pa.concat_tables(
        [generate.fraud_transactions(d, customers=CUSTOMERS, seed=7) for d in days]
    )
    con.register("tx_in", tx)
    con.register("cb_in", cb)
    con.register("truth_in", truth)
    con.execute(
        """
        CREATE TABLE tx AS
        SELECT t.* EXCLUDE (amount, event_ts), CAST(amount AS DECIMAL(18, 2)) AS amount,
               amount AS amount_text, event_ts AS event_text,
               CAST(event_ts AS TIMESTAMP) AS event_ts,
               (f.transaction_id IS NOT NULL)::INTEGER AS is_fraud, f.pattern
        FROM tx_in AS t LEFT JOIN truth_in AS f USING (transaction_id);
        CREATE TABLE cb AS
        SELECT transaction_id, CAST(reported_at AS TIMESTAMP) AS reported_at,
               reported_at AS reported_text, reason_code, dt
        FROM cb_in;
        """
    )
    return con


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
@pytest.mark.integration
def test_same_seed_and_day_give_the_same_bytes_on_any_store(
    local_store: LocalStore, s3_store: ObjectStore, tmp_path: Path, file_format: str
) -> None:
    day = date(2026, 3, 10)
    kw = {
        "customers": 300,
        "rows_per_file": 150,
        "history_start": date(2026, 3, 1),
        "file_format": file_format,
    }
    first = generate.generate_day(local_store, day, **kw)
    again = generate.generate_day(LocalStore(tmp_path / "again"), day, **kw)
    on_s3 = generate.generate_day(s3_store, day, **kw)
    assert first["keys"] == again["keys"] == on_s3["keys"]
    assert len(first["keys"]) > 4  # several transaction parts, chargebacks, two _SUCCESS
    again_store = LocalStore(tmp_path / "again")
    for key in first["keys"]:
        data = local_store.get_bytes(key)
        assert data == again_store.get_bytes(key) == s3_store.get_bytes(key), key

    other = generate.generate_day(LocalStore(tmp_path / "seed8"), day, **kw, seed=8)
    other_store = LocalStore(tmp_path / "seed8")
    part = f"landing/transactions/dt=2026-03-10/part-00000.{file_format}"
    assert other_store.get_bytes(part) != local_store.get_bytes(part)
    assert other["keys"][0] == part


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
@pytest.mark.unit
def test_success_lists_every_part_with_its_row_count(
    local_store: LocalStore, file_format: str
) -> None:
    day = date(2026, 3, 10)
    summary = generate.generate_day(
        local_store,
        day,
        customers=800,
        rows_per_file=250,
        file_format=file_format,
        history_start=day - timedelta(days=30),
    )
    success = _success(local_store, "transactions", day)
    assert success["dataset"] == "transactions" and success["dt"] == "2026-03-10"
    folder = "landing/transactions/dt=2026-03-10/"
    listed = [folder + f["name"] for f in success["files"]]
    assert sorted(listed + [folder + "_SUCCESS"]) == local_store.list(folder)
    assert len(listed) == -(-summary["transactions"] // 250) > 1
    for entry in success["files"]:
        assert entry["name"].endswith(f".{file_format}")
        assert _read(local_store, folder + entry["name"]).num_rows == entry["rows"]
        assert entry["rows"] <= 250
    assert sum(f["rows"] for f in success["files"]) == summary["transactions"]

    cb = _success(local_store, "chargebacks", day)
    cb_rows = sum(
        _read(local_store, f"landing/chargebacks/dt={day}/" + f["name"]).num_rows
        for f in cb["files"]
    )
    assert cb["dataset"] == "chargebacks" and cb_rows == summary["chargebacks"] > 0


@pytest.mark.unit
def test_regenerating_a_day_drops_parts_of_the_earlier_delivery(local_store: LocalStore) -> None:
    day = date(2026, 3, 10)
    generate.generate_day(local_store, day, customers=500, rows_per_file=100)
    generate.generate_day(local_store, day, customers=500, rows_per_file=100_000)
    folder = "landing/transactions/dt=2026-03-10/"
    assert local_store.list(folder) == [folder + "_SUCCESS", folder + "part-00000.csv"]
    assert [f["name"] for f in _success(local_store, "transactions", day)["files"]] == [
        "part-00000.csv"
    ]


@pytest.mark.unit
def test_columns_and_values_follow_the_landing_contract(history: duckdb.DuckDBPyConnection):
    con = history
    columns = [c[0] for c in con.execute("SELECT * EXCLUDE (dt) FROM tx_in LIMIT 0").description]
    assert columns == list(generate.TRANSACTION_COLUMNS)
    bad = con.execute(
        r"""
        SELECT
          count(*) FILTER (WHERE NOT regexp_full_match(event_text,
                                 '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ')),
          count(*) FILTER (WHERE CAST(event_ts AS DATE) <> dt),
          count(*) FILTER (WHERE NOT regexp_full_match(amount_text, '\d+\.\d\d') OR amount <= 0),
          count(*) FILTER (WHERE NOT regexp_full_match(transaction_id, 't-\d{8}-\d{10}')
                           OR substr(transaction_id, 3, 8) <> strftime(dt, '%Y%m%d')),
          count(*) FILTER (WHERE NOT regexp_full_match(customer_id, 'c\d{6}')),
          count(*) FILTER (WHERE NOT regexp_full_match(merchant_id, 'm\d{5}')),
          count(*) FILTER (WHERE channel NOT IN ('online', 'pos', 'contactless')),
          count(*) FILTER (WHERE merchant_category NOT IN ('grocery', 'restaurants', 'fuel',
              'travel', 'electronics', 'fashion', 'digital_goods', 'pharmacy', 'entertainment',
              'jewelry')),
          count(*) - count(DISTINCT transaction_id)
        FROM tx
        """
    ).fetchone()
    assert bad == (0,) * 9
    pairs = con.execute("SELECT DISTINCT country, currency FROM tx").fetchall()
    for country, currency in pairs:
        assert re.fullmatch("[A-Z]{2}", country) and currency in ISO_4217
        assert (currency == "EUR") == (country in EURO), (country, currency)
    homes = dict(con.execute("SELECT country, count(*) FROM tx GROUP BY 1").fetchall())
    main = sum(homes.get(c, 0) for c in ("DE", "FR", "NL", "ES", "IT", "BE", "AT", "PT"))
    assert main / sum(homes.values()) > 0.85
    # Every merchant always has the same category and country.
    assert con.execute(
        "SELECT count(*) FROM (SELECT merchant_id FROM tx GROUP BY 1 "
        "HAVING count(DISTINCT merchant_category) > 1 OR count(DISTINCT country) > 1)"
    ).fetchone() == (0,)


@pytest.mark.unit
def test_chargebacks_refer_to_earlier_transactions_and_come_after_them(
    history: duckdb.DuckDBPyConnection,
) -> None:
    con = history
    total, orphans, early, outside, bad_text, bad_reason, dupes = con.execute(
        r"""
        SELECT count(*),
               count(*) FILTER (WHERE t.transaction_id IS NULL),
               count(*) FILTER (WHERE c.reported_at <= t.event_ts OR t.dt >= c.dt),
               count(*) FILTER (WHERE CAST(c.reported_at AS DATE) <> c.dt),
               count(*) FILTER (WHERE NOT regexp_full_match(reported_text,
                                      '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ')),
               count(*) FILTER (WHERE reason_code NOT IN ('10.4', '10.5', '13.1', '4837', '4863')),
               count(*) - count(DISTINCT c.transaction_id)
        FROM cb AS c LEFT JOIN tx AS t USING (transaction_id)
        """
    ).fetchone()
    assert total > 200
    assert (orphans, early, outside, bad_text, bad_reason, dupes) == (0, 0, 0, 0, 0, 0)

    # Fraud old enough for every dispute to have arrived: most of it is charged back, with a
    # right-skewed delay, and a few legitimate transactions get friendly-fraud chargebacks.
    share, median_delay, max_delay, friendly = con.execute(
        f"""
        SELECT avg((c.transaction_id IS NOT NULL)::INTEGER) FILTER (WHERE t.is_fraud = 1),
               median(c.dt - t.dt) FILTER (WHERE t.is_fraud = 1),
               max(c.dt - t.dt),
               count(c.transaction_id) FILTER (WHERE t.is_fraud = 0)
        FROM tx AS t LEFT JOIN cb AS c USING (transaction_id)
        WHERE t.dt <= DATE '{END}' - {generate.MAX_DELAY_DAYS}
        """
    ).fetchone()
    assert 0.82 <= share <= 0.97
    assert 2 <= median_delay <= 8 and max_delay <= generate.MAX_DELAY_DAYS
    assert friendly > 0


@pytest.mark.unit
def test_fraud_rate_is_roughly_as_configured(
    history: duckdb.DuckDBPyConnection, local_store: LocalStore
) -> None:
    rate = history.execute("SELECT avg(is_fraud) FROM tx").fetchone()[0]
    assert 0.008 <= rate <= 0.017  # configured 0.012

    week = generate.generate_range(
        local_store, "2026-03-01", "2026-03-07", customers=2000, fraud_rate=0.04
    )
    fraud = sum(s["fraud_transactions"] for s in week)
    assert 0.03 <= fraud / sum(s["transactions"] for s in week) <= 0.052


@pytest.mark.unit
def test_planted_patterns_are_visible(history: duckdb.DuckDBPyConnection) -> None:
    con = history
    con.execute(
        """
        CREATE OR REPLACE TEMP VIEW habits AS
        SELECT customer_id, median(amount) AS typical, mode(country) AS usual_country
        FROM tx WHERE is_fraud = 0 GROUP BY 1
        """
    )
    stats = {
        fraud: row
        for fraud, *row in con.execute(
            """
            SELECT t.is_fraud,
                   avg(t.amount / h.typical),
                   avg((t.country <> h.usual_country)::INTEGER),
                   avg((hour(t.event_ts) < 5 AND t.channel = 'online')::INTEGER),
                   avg((t.merchant_category IN ('digital_goods', 'electronics', 'jewelry')
                        AND hour(t.event_ts) < 5)::INTEGER)
            FROM tx AS t JOIN habits AS h USING (customer_id)
            GROUP BY 1
            """
        ).fetchall()
    }
    (legit_ratio, legit_abroad, legit_night, legit_night_goods) = stats[0]
    (fraud_ratio, fraud_abroad, fraud_night, fraud_night_goods) = stats[1]
    assert fraud_ratio > 2.5 * legit_ratio
    assert fraud_abroad > 8 * legit_abroad and legit_abroad > 0.003
    assert fraud_night > 10 * legit_night and legit_night > 0.001
    assert fraud_night_goods > 10 * legit_night_goods

    # Takeover victims' activity jumps: on the days of a takeover after its first, the day
    # before holds several times the customer's usual daily count.
    burst, usual = con.execute(
        f"""
        WITH daily AS (SELECT customer_id, dt, count(*) AS n FROM tx GROUP BY 1, 2),
             usual AS (
                 SELECT customer_id, count(*) / {(END - START).days + 1} AS n
                 FROM tx WHERE is_fraud = 0 GROUP BY 1
             ),
             taken AS (SELECT DISTINCT customer_id, dt FROM tx WHERE pattern = 'takeover')
        SELECT avg(d.n), avg(u.n)
        FROM taken AS v
        JOIN taken AS before ON before.customer_id = v.customer_id AND before.dt = v.dt - 1
        JOIN daily AS d ON d.customer_id = v.customer_id AND d.dt = v.dt - 1
        JOIN usual AS u ON u.customer_id = v.customer_id
        """
    ).fetchone()
    assert burst > 2.5 * usual


@pytest.mark.unit
def test_a_model_on_snapshot_features_and_transaction_fields_separates_fraud(
    history: duckdb.DuckDBPyConnection,
) -> None:
    """Features as of the latest snapshot available at event time (cutoff + 2 h lag)."""
    frame = history.execute(
        """
        WITH cut AS (SELECT DISTINCT dt AS c FROM tx),
        snap AS (
            SELECT t.customer_id, k.c,
                   count(*) FILTER (WHERE t.event_ts >= k.c) AS n_24h,
                   count(*) FILTER (WHERE t.event_ts >= k.c - INTERVAL 6 DAY) AS n_7d,
                   count(*) AS n_30d,
                   avg(t.amount) AS mean_30d, max(t.amount) AS max_30d,
                   mode(t.country) AS usual_country,
                   avg((t.channel = 'online')::INTEGER) AS online_30d,
                   max(t.event_ts) AS last_ts
            FROM cut AS k JOIN tx AS t
              ON t.event_ts < k.c + INTERVAL 1 DAY AND t.event_ts >= k.c - INTERVAL 29 DAY
            GROUP BY 1, 2
        )
        SELECT t.dt, t.is_fraud, t.amount::DOUBLE AS amount, hour(t.event_ts) AS hour,
               t.channel, t.merchant_category,
               s.n_24h, s.n_7d, s.n_30d, s.mean_30d::DOUBLE AS mean_30d,
               s.max_30d::DOUBLE AS max_30d, s.online_30d,
               (t.country <> s.usual_country)::INTEGER AS abroad,
               t.amount::DOUBLE / s.mean_30d::DOUBLE AS amount_ratio,
               epoch(t.event_ts - s.last_ts) AS since_last
        FROM tx AS t LEFT JOIN snap AS s
          ON s.customer_id = t.customer_id
         AND s.c = t.dt - CASE WHEN hour(t.event_ts) >= 2 THEN 1 ELSE 2 END
        WHERE t.dt >= DATE '2026-01-08'
        """
    ).df()
    for name in ("channel", "merchant_category"):
        frame[name] = frame[name].astype("category")
    features = frame.drop(columns=["dt", "is_fraud"])
    train = frame["dt"] < np.datetime64("2026-01-31")
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=100, learning_rate=0.08, random_state=0
    ).fit(features[train], frame["is_fraud"][train])
    scores = model.predict_proba(features[~train])[:, 1]
    auc = roc_auc_score(frame["is_fraud"][~train], scores)
    assert frame["is_fraud"][~train].sum() > 100
    assert 0.8 < auc < 0.99


@pytest.mark.unit
def test_customers_zero_lands_an_empty_day(local_store: LocalStore) -> None:
    day = date(2026, 3, 10)
    summary = generate.generate_day(local_store, day, customers=0)
    assert (summary["transactions"], summary["chargebacks"]) == (0, 0)
    for dataset in ("transactions", "chargebacks"):
        assert _success(local_store, dataset, day) == {
            "dataset": dataset,
            "dt": "2026-03-10",
            "files": [],
        }
        assert local_store.list(f"landing/{dataset}/") == [
            f"landing/{dataset}/dt=2026-03-10/_SUCCESS"
        ]


@pytest.mark.unit
def test_chargebacks_start_with_the_first_landed_day(
    local_store: LocalStore, tmp_path: Path
) -> None:
    first = date(2026, 3, 10)
    opening = generate.generate_day(local_store, first, customers=2000)
    assert (opening["history_start"], opening["chargebacks"]) == ("2026-03-10", 0)

    # Extending the history day by day finds its start in the store, and gives the same bytes
    # as naming the start explicitly.
    later = generate.generate_day(local_store, first + timedelta(days=5), customers=2000)
    assert later["history_start"] == "2026-03-10" and later["chargebacks"] > 0
    named = LocalStore(tmp_path / "named")
    generate.generate_day(named, first + timedelta(days=5), customers=2000, history_start=first)
    key = "landing/chargebacks/dt=2026-03-15/part-00000.csv"
    assert named.get_bytes(key) == local_store.get_bytes(key)
    ids = _read(local_store, key).column("transaction_id").to_pylist()
    assert all("20260310" <= i[2:10] < "20260315" for i in ids)

    # An explicit earlier start disputes fraud from before the first landed day too.
    wider = generate.generate_day(
        LocalStore(tmp_path / "wider"),
        first + timedelta(days=5),
        customers=2000,
        history_start=first - timedelta(days=30),
    )
    assert wider["chargebacks"] > later["chargebacks"]
    with pytest.raises(ValueError, match="before history_start"):
        generate.generate_day(local_store, first - timedelta(days=1), history_start=first)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"file_format": "json"}, "file_format"),
        ({"customers": -1}, "customers"),
        ({"fraud_rate": 0.7}, "fraud_rate"),
        ({"rows_per_file": 0}, "rows_per_file"),
    ],
)
@pytest.mark.unit
def test_bad_arguments_are_refused_with_the_offending_value(
    local_store: LocalStore, kw: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate.generate_day(local_store, "2026-03-10", **kw)
    assert local_store.list("landing/") == []
