"""Great Expectations gates on real GX runs: each suite on a passing batch and on crafted failing
batches, one per kind of defect, plus warn-only handling, the results table and Data Docs.

Raw suites run on realistic generated days (300 customers) with three earlier days already
current, so the checks against recent history are evaluated too. Snapshot and training-set
suites run on a real dbt build.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pandas as pd
import pytest

from mlpipeline import quality
from mlpipeline.core import landing
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore, ObjectStore
from mlpipeline.devtools.generate import generate_range
from mlpipeline.features import dbt_project, transform
from mlpipeline.ingest import batches, gates
from mlpipeline.ingest.revisions import load_revision, prepare_revision
from mlpipeline.training.split_store import read_training_set
from mlpipeline.warehouse import connect
from mlpipeline.warehouse import create as create_warehouse
from tests.dbt_fixtures import background, load_raw
from tests.lake_copy import copy_warehouse

pytestmark = pytest.mark.integration

START = date(2026, 3, 2)
DAY = START + timedelta(days=3)
CUSTOMERS = 300

# What each check is called in the suites (meta.notes), as the failures name them.
RECONCILED = "rows written = rows declared in _SUCCESS - rows rejected"
REJECT_RATE = "reject rate within quality.raw.max_reject_rate"
VOLUME = "row count in line with recent days"
DUPLICATES = "transaction ids not already current in another batch"
CUSTOMERS_RECENT = "distinct customers in line with recent days"
CUSTOMER_SHARE = "distinct customers per transaction above a floor"
MEAN, MEDIAN, P99 = (
    "mean amount (EUR) within bounds",
    "median amount (EUR) within bounds",
    "99th percentile of amount (EUR) below its bound",
)
ONLINE = "share of online transactions within bounds"
DAY_START, DAY_END = "the day is covered from its start", "fresh: the day is covered up to its end"


def failed(outcome: quality.CheckOutcome) -> list[str]:
    return sorted(f.name for f in outcome.failures)


# --- raw suites ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated days landed; the first three ingested, checked and current."""
    root = tmp_path_factory.mktemp("history")
    store = LocalStore(root / "objectstore")
    generate_range(store, START, DAY, customers=CUSTOMERS)
    settings = Settings.under(root)
    create_warehouse(settings)
    with connect(settings) as con:
        for offset in range(3):
            for dataset in landing.DATASETS:
                prepared = prepare_revision(store, dataset, START + timedelta(days=offset))
                load_revision(con, store, prepared, run_id="history")
                batches.set_status(
                    con, prepared.batch_id, prepared.revision, "validated", run_id="history"
                )
                batches.promote(con, prepared.batch_id, prepared.revision, run_id="history")
    return root


@pytest.fixture()
def store(history: Path, settings: Settings) -> LocalStore:
    """This test's copy of the landed days and of the warehouse holding the first three."""
    shutil.copytree(history / "objectstore", settings.local_store_root, dirs_exist_ok=True)
    copy_warehouse(Settings.under(history), settings)
    return LocalStore(settings.local_store_root)


def landed(store: ObjectStore, dataset: str = "transactions", day: date = DAY) -> pd.DataFrame:
    frames = [
        pd.read_csv(
            io.BytesIO(store.get_bytes(landing.day_prefix(dataset, day) + name)),
            dtype=str,
            keep_default_na=False,
        )
        for name in landing.list_data_files(store, dataset, day)
    ]
    return pd.concat(frames, ignore_index=True)


def deliver(
    store: ObjectStore, frame: pd.DataFrame, dataset: str = "transactions", day: date = DAY
) -> None:
    """Replace the day's files with one file holding `frame`, and a matching `_SUCCESS`."""
    prefix = landing.day_prefix(dataset, day)
    for name in landing.list_data_files(store, dataset, day):
        store.delete(prefix + name)
    if len(frame):
        store.put_bytes(prefix + "part-00000.csv", frame.to_csv(index=False).encode())
    files = [landing.DeclaredFile("part-00000.csv", len(frame))] if len(frame) else []
    landing.write_success(store, dataset, day, files)


def tamper(store: ObjectStore, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    deliver(store, change(landed(store)))


def check(
    settings: Settings, store: ObjectStore, dataset: str = "transactions", day: date = DAY, **kw
) -> quality.CheckOutcome:
    """Ingest the landed day as a revision (not current) and run its raw gate."""
    prepared = prepare_revision(store, dataset, day)
    with connect(settings) as con:
        load_revision(con, store, prepared, run_id="test")
        return gates.raw_gate(con, prepared.batch_id, prepared.revision, **kw)


def make_current(settings: Settings, store: ObjectStore, dataset: str, day: date = DAY) -> None:
    prepared = prepare_revision(store, dataset, day)
    with connect(settings) as con:
        load_revision(con, store, prepared, run_id="test")
        batches.set_status(con, prepared.batch_id, prepared.revision, "validated", run_id="t")
        batches.promote(con, prepared.batch_id, prepared.revision, run_id="t")


def test_raw_transactions_pass_on_a_normal_day_and_results_are_recorded(settings, store):
    outcome = check(settings, store)
    assert outcome.success and not outcome.warnings and not outcome.skipped
    assert outcome.subject.startswith(f"transactions-{DAY}@")
    assert len(outcome.results) == 14
    with connect(settings) as con:
        quality.record(con, outcome, run_id="r1")
        rows = con.execute(
            "SELECT suite, expectation, success, observed FROM meta.validation_results "
            "WHERE subject = ? ORDER BY expectation",
            [outcome.subject],
        ).fetchall()
    assert {r[0] for r in rows} == {"raw_transactions"} and all(r[2] for r in rows)
    assert any(ONLINE in r[1] and r[3].startswith("ok: observed 0.") for r in rows)


def test_a_file_with_30_percent_rejected_rows_is_quarantine_worthy(settings, store):
    def break_amounts(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index % 10 < 3, "amount"] = "12,50"
        return df

    tamper(store, break_amounts)
    outcome = check(settings, store)
    assert failed(outcome) == [REJECT_RATE]
    (failure,) = outcome.failures
    assert "observed" in failure.observed and "min_value=" in failure.expected


def test_rows_lost_between_ingest_and_check_break_the_reconciliation(settings, store):
    prepared = prepare_revision(store, "transactions", DAY)
    with connect(settings) as con:
        load_revision(con, store, prepared, run_id="test")
        con.execute(
            "DELETE FROM raw.transactions WHERE batch_id = ? AND revision = ? "
            "AND source_row % 50 = 0",
            [prepared.batch_id, prepared.revision],
        )
        outcome = gates.raw_gate(con, prepared.batch_id, prepared.revision)
    assert failed(outcome) == [RECONCILED]
    lost = prepared.rows_written // 50
    assert f"observed {prepared.rows_written - lost}" in outcome.failures[0].observed


def test_transactions_already_current_in_another_batch_are_duplicates(settings, store):
    earlier = landed(store, day=START)

    def replay(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[:4, "transaction_id"] = earlier["transaction_id"].iloc[:5].to_numpy()
        return df

    tamper(store, replay)
    outcome = check(settings, store)
    assert failed(outcome) == [DUPLICATES]
    assert f"5 unexpected of {outcome.rows}" in outcome.failures[0].observed
    assert f"transactions-{START}" in outcome.failures[0].observed


def test_amounts_in_cents_break_the_amount_distribution(settings, store):
    def cents(df: pd.DataFrame) -> pd.DataFrame:
        df["amount"] = (df["amount"].astype(float) * 100).clip(upper=20000).map("{:.2f}".format)
        return df

    tamper(store, cents)
    assert failed(check(settings, store)) == sorted([MEAN, MEDIAN, P99])


def test_a_channel_mix_gone_wrong_fails_the_online_share(settings, store):
    tamper(store, lambda df: df.assign(channel="online"))
    assert failed(check(settings, store)) == [ONLINE]


def test_customer_ids_collapsed_to_one_fail_the_customer_checks(settings, store):
    tamper(store, lambda df: df.assign(customer_id="c000001"))
    assert failed(check(settings, store)) == sorted([CUSTOMERS_RECENT, CUSTOMER_SHARE])


def test_a_feed_that_stops_in_the_evening_is_not_fresh(settings, store):
    # Most of the day is there (volume and customers look normal), but nothing after 19:00.
    tamper(store, lambda df: df[df["event_ts"] < f"{DAY}T19:00:00Z"].reset_index(drop=True))
    outcome = check(settings, store)
    assert failed(outcome) == [DAY_END]
    assert f"observed '{DAY} 18:" in outcome.failures[0].observed


def test_a_day_with_a_fraction_of_its_volume_fails_the_volume_check(settings, store):
    tamper(store, lambda df: df.iloc[::4].reset_index(drop=True))
    assert VOLUME in failed(check(settings, store))


def test_new_category_and_currency_only_warn_and_are_recorded(settings, store):
    def novel(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[:2, "merchant_category"] = "casino"
        df.loc[3, "currency"] = "ISK"
        return df

    tamper(store, novel)
    outcome = check(settings, store)
    assert outcome.success
    assert sorted(w.column for w in outcome.warnings) == ["currency", "merchant_category"]
    assert (
        "['casino', 'casino', 'casino'] at rows "
        "['part-00000.csv:1', 'part-00000.csv:2', 'part-00000.csv:3']" in outcome.describe()
    )
    with connect(settings) as con:
        quality.record(con, outcome, run_id="r1")
        warned = con.execute(
            "SELECT count(*) FROM meta.validation_results "
            "WHERE severity = 'warning' AND NOT success AND subject = ?",
            [outcome.subject],
        ).fetchone()[0]
    assert warned == 2


def test_a_declared_empty_day_passes(settings, store):
    deliver(store, landed(store).iloc[:0])
    outcome = check(settings, store)
    assert outcome.success and outcome.rows == 0
    assert {r.check for r in outcome.results} >= {RECONCILED, REJECT_RATE, DUPLICATES}
    assert any(MEAN in s for s in outcome.skipped)


def test_a_small_day_skips_distribution_checks_and_says_so(settings, store):
    tamper(store, lambda df: df.iloc[:20].reset_index(drop=True))
    outcome = check(settings, store)
    assert VOLUME in failed(outcome)
    assert any("needs at least 100 rows, the data has 20" in s for s in outcome.skipped)
    assert "not evaluated" in outcome.describe()


CHARGEBACK_COLUMNS = ["transaction_id", "reported_at", "reason_code"]


def _chargebacks(store: ObjectStore, rows: list[tuple[str, str, str]]) -> None:
    deliver(store, pd.DataFrame(rows, columns=CHARGEBACK_COLUMNS), dataset="chargebacks")


def _earlier_ids(store: ObjectStore, n: int) -> list[str]:
    return landed(store, day=START)["transaction_id"].iloc[:n].tolist()


def test_raw_chargebacks_pass_when_they_follow_known_transactions(settings, store):
    ids = _earlier_ids(store, 3)
    _chargebacks(store, [(t, f"{DAY}T09:00:00Z", "10.4") for t in ids])
    outcome = check(settings, store, "chargebacks")
    assert outcome.success and not outcome.warnings and outcome.rows == 3


def test_a_transaction_charged_back_twice_in_one_revision_fails(settings, store):
    (tid,) = _earlier_ids(store, 1)
    _chargebacks(store, [(tid, f"{DAY}T09:00:00Z", "10.4"), (tid, f"{DAY}T10:00:00Z", "13.1")])
    outcome = check(settings, store, "chargebacks")
    assert failed(outcome) == ["one chargeback per transaction in the revision"]
    assert repr(tid) in outcome.failures[0].observed


def test_chargebacks_whose_transactions_are_not_current_yet_only_warn(settings, store):
    """Processed before their transactions (a backfill out of order, a quarantined day), most
    chargebacks of a day wait: the verdict must not depend on the processing order."""
    ids = _earlier_ids(store, 2) + [f"T{i:08d}" for i in range(10)]
    _chargebacks(store, [(t, f"{DAY}T09:00:00Z", "10.4") for t in ids])
    outcome = check(settings, store, "chargebacks")
    assert outcome.success and outcome.rows == 12
    (warning,) = outcome.warnings
    assert warning.column == "transaction_ts" and "10" in warning.observed


def test_a_chargebacks_file_whose_every_row_is_rejected_is_quarantine_worthy(settings, store):
    """Two rows, both unparsable: within the allowance, yet nothing is left."""
    _chargebacks(store, [(f"T-{i}", "yesterday", "10.4") for i in (1, 2)])
    outcome = check(settings, store, "chargebacks")
    assert not outcome.success
    assert any("row_count" in failure.expectation for failure in outcome.failures)


def test_a_transaction_charged_back_again_on_a_later_day_only_warns(settings, store):
    (tid,) = _earlier_ids(store, 1)
    _chargebacks(store, [(tid, f"{DAY}T09:00:00Z", "10.4")])
    make_current(settings, store, "chargebacks")
    later = DAY + timedelta(days=1)
    frame = pd.DataFrame([(tid, f"{later}T08:00:00Z", "4837")], columns=CHARGEBACK_COLUMNS)
    deliver(store, frame, dataset="chargebacks", day=later)
    outcome = check(settings, store, "chargebacks", day=later)
    assert outcome.success
    (warning,) = outcome.warnings
    assert warning.column == "already_reported_in" and f"chargebacks-{DAY}" in warning.observed


# --- Data Docs ----------------------------------------------------------------------------------


def test_data_docs_are_built_and_mirrored_and_the_index_lists_other_workers_runs(
    settings, store, s3_store, tmp_path
):
    first = quality.DataDocs(tmp_path / "worker-a", s3_store, index_limit=50)
    outcome = check(settings, store, docs=first, run_name="manual__2026-03-05T00:00:00+00:00")
    assert outcome.success
    page = outcome.page
    assert page is not None and page.local.exists()
    assert page.key.startswith("reports/data_docs/validations/raw_transactions/manual__2026")
    assert s3_store.exists(page.key) and s3_store.exists("reports/data_docs/index.html")
    assert s3_store.exists("reports/data_docs/static/styles/data_docs_default_styles.css")
    assert page.key in outcome.describe()
    # The result behind the page was made by a GX Checkpoint run, and is published beside it.
    result_key = page.key.replace("/validations/", "/results/").removesuffix(".html") + ".json"
    assert json.loads(s3_store.get_bytes(result_key))["meta"]["checkpoint_id"]

    # Another worker with an empty local folder: its index lists the first worker's run too.
    second = quality.DataDocs(tmp_path / "worker-b", s3_store, index_limit=50)
    other = check(settings, store, "chargebacks", docs=second, run_name="catchup")
    assert other.page.local.is_relative_to(tmp_path / "worker-b")
    index = unquote(s3_store.get_bytes("reports/data_docs/index.html").decode())
    assert page.local.name in index and other.page.local.name in index


def test_data_docs_pages_load_every_style_and_script_from_the_site_itself(
    settings, store, s3_store, tmp_path
):
    """Offline, a page whose Bootstrap or bootstrap-table comes from a CDN is unstyled and the
    index lists nothing: every stylesheet, script and image is a file of the published site."""
    docs = quality.DataDocs(tmp_path / "site", s3_store, index_limit=50)
    page = check(settings, store, docs=docs, run_name="offline").page
    for key in (page.key, "reports/data_docs/index.html"):
        html = s3_store.get_bytes(key).decode()
        assets = re.findall(r'<(?:script|link|img)[^>]*?(?:src|href)="([^"]+)"', html)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
        folder = posixpath.dirname(key)
        for asset in assets:
            published = posixpath.normpath(posixpath.join(folder, asset.split("?")[0]))
            assert s3_store.exists(published), f"{key} loads {asset}: not published"
        assert "bootstrap-table.min.js" in html and "integrity=" not in html
    webfonts = "reports/data_docs/static/vendor/@fortawesome__fontawesome-free@6.6.0/webfonts/"
    assert s3_store.list(webfonts)


# --- snapshot and training set ------------------------------------------------------------------

FIRST, LAST = date(2026, 1, 1), date(2026, 2, 14)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """45 days of raw data (12 customers) and one full dbt build for cutoff LAST."""
    root = tmp_path_factory.mktemp("built")
    settings = Settings.under(root)
    transactions, chargebacks = background(FIRST, LAST, customers=12)
    create_warehouse(settings)
    with connect(settings) as con:
        load_raw(con, "transactions", transactions)
        load_raw(con, "chargebacks", chargebacks)
    transform.build(LAST, settings=settings, full_refresh=True)
    return settings


@pytest.fixture()
def warehouse(built: Settings, tmp_path: Path) -> Settings:
    """This test's copy of the built warehouse, free to tamper with."""
    copy = built.model_copy(
        update={
            "warehouse_catalog": Settings.under(tmp_path).warehouse_catalog,
            "warehouse_data_path": Settings.under(tmp_path).warehouse_data_path,
        }
    )
    copy_warehouse(built, copy)
    return copy


def snapshot_check(settings: Settings) -> quality.CheckOutcome:
    spec = dbt_project.online_spec()
    with connect(settings) as con:
        return gates.snapshot_gate(
            con, LAST, feature_columns=[f.name for f in spec.features], ttl_days=spec.ttl_days
        )


def tamper_snapshot(settings: Settings, sql: str) -> None:
    with connect(settings) as con:
        con.execute(sql.replace("{cut}", f"cutoff_date = DATE '{LAST}'"))


def test_snapshot_passes_on_the_real_build(warehouse):
    outcome = snapshot_check(warehouse)
    assert outcome.success and not outcome.skipped, outcome.describe()
    assert outcome.subject == f"cutoff={LAST}" and outcome.rows == 12


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "DELETE FROM features.customer_snapshot WHERE {cut} AND customer_id = 'bg-c03'",
            ["one row per customer active within the online TTL"],
        ),
        (
            "UPDATE features.customer_snapshot SET last_txn_ts = last_txn_ts - INTERVAL 1 DAY "
            "WHERE {cut}",
            ["fresh: reflects the newest current transaction before the cutoff"],
        ),
        (
            "UPDATE features.customer_snapshot SET last_txn_ts = TIMESTAMP '2026-02-15 00:30:00' "
            "WHERE {cut} AND customer_id = 'bg-c05'",
            [
                "fresh: reflects the newest current transaction before the cutoff",
                "nothing at or after the cutoff leaks in",
            ],
        ),
        (
            "UPDATE features.customer_snapshot SET online_share_30d = online_share_30d * 100 "
            "WHERE {cut}",
            ["expect_column_values_to_be_between on online_share_30d"],
        ),
        (
            # The model's contract refuses a NULL here; a warehouse built before the contract
            # (it binds at the next full refresh) has no such constraint, and the gate still
            # catches the NULL.
            "ALTER TABLE features.customer_snapshot ALTER COLUMN txn_count_30d DROP NOT NULL; "
            "UPDATE features.customer_snapshot SET txn_count_30d = NULL WHERE {cut} "
            "AND customer_id = 'bg-c01'",
            ["expect_column_values_to_not_be_null on txn_count_30d"],
        ),
        (
            "ALTER TABLE features.customer_snapshot DROP COLUMN amount_sum_30d",
            [
                "expect_column_values_to_be_between on amount_sum_30d",
                "expect_column_values_to_not_be_null on amount_sum_30d",
                "the declared online features are columns of the snapshot",
            ],
        ),
    ],
    ids=["customer-dropped", "stale", "leak", "out-of-range", "null", "missing-feature"],
)
def test_snapshot_defects_fail_the_gate(warehouse, sql, expected):
    tamper_snapshot(warehouse, sql)
    outcome = snapshot_check(warehouse)
    assert failed(outcome) == sorted(expected), outcome.describe()


def test_the_snapshot_contract_refuses_a_null_feature_before_any_gate(warehouse):
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL.*txn_count_30d"):
        tamper_snapshot(
            warehouse,
            "UPDATE features.customer_snapshot SET txn_count_30d = NULL WHERE {cut} "
            "AND customer_id = 'bg-c01'",
        )


def test_snapshot_row_count_is_compared_with_recent_cutoffs(warehouse):
    # The earlier cutoffs had three times as many active customers as this one has:
    # the raw data and the snapshot agree, yet half the customers are gone since last week.
    with connect(warehouse) as con:
        for twin in ("-twin-a", "-twin-b"):
            con.execute(
                "INSERT INTO features.customer_snapshot SELECT * REPLACE "
                "(customer_id || ? AS customer_id) FROM features.customer_snapshot "
                "WHERE cutoff_date < ? AND NOT contains(customer_id, '-twin')",
                [twin, LAST],
            )
    outcome = snapshot_check(warehouse)
    assert failed(outcome) == ["row count in line with recent cutoffs"]


def training_check(
    settings: Settings, change=lambda df: df, window_days: int | None = None
) -> quality.CheckOutcome:
    with connect(settings) as con:
        frame = change(read_training_set(con, LAST))
        return gates.training_set_gate(
            con,
            frame,
            LAST,
            maturity_days=gates.label_maturity_days(settings),
            window_days=window_days or gates.training_window_days(settings),
        )


def test_training_set_passes_on_the_real_build(warehouse):
    outcome = training_check(warehouse)
    assert outcome.success, outcome.describe()
    assert outcome.subject == f"training_cutoff={LAST}" and outcome.rows > 100


def test_training_set_rows_are_counted_within_the_training_window(warehouse):
    # The build's window holds every matured day; a gate told of a 2-day window expects fewer.
    outcome = training_check(warehouse, window_days=2)
    assert failed(outcome) == ["one row per current transaction before the label horizon"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda df: df.assign(is_fraud=1), ["label rate within bounds"]),
        (lambda df: df.iloc[10:], ["one row per current transaction before the label horizon"]),
        (
            lambda df: df.assign(event_ts=df["event_ts"] + pd.Timedelta(days=30)),
            ["matured: every row before the label horizon"],
        ),
        (
            lambda df: df.assign(amount=df["amount"].where(df.index % 7 > 0)),
            ["expect_column_values_to_not_be_null on amount"],
        ),
        (
            lambda df: df.assign(training_cutoff=df["training_cutoff"] - pd.Timedelta(days=1)),
            ["built for training cutoff D", "built for training cutoff D"],
        ),
    ],
    ids=["label-rate", "rows-lost", "not-matured", "null-amount", "wrong-cutoff"],
)
def test_training_set_defects_fail_the_gate(warehouse, change, expected):
    assert failed(training_check(warehouse, change)) == sorted(expected)


def test_suites_come_from_the_folder_named_by_the_environment(warehouse, tmp_path, monkeypatch):
    folder = tmp_path / "suites"
    shutil.copytree(quality.suites_dir(), folder)
    suite = folder / "customer_snapshot.json"
    suite.write_text(
        suite.read_text().replace(
            '"column": "txn_count_30d", "min_value": 0}',
            '"column": "txn_count_30d", "min_value": 400}',
        )
    )
    monkeypatch.setenv(quality.SUITES_ENV, str(folder))
    assert failed(snapshot_check(warehouse)) == [
        "expect_column_values_to_be_between on txn_count_30d"
    ]
