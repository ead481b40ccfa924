"""Retention cleanup on real components: DuckDB, the folder store and S3 (moto over HTTP),
Redis, a Delta table, GX Data Docs and an MLflow sqlite store.

Each test builds artifacts in two phases, notes the instant between them and runs the cleanup
with `now` = that instant + the age: the first phase is old, the second recent. Every kind is
checked the same way: a dry run changes nothing and plans exactly what the real run deletes,
the real run keeps what is in use even when old, and a second run deletes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow.entities import ViewType

from mlpipeline import cli, online, quality
from mlpipeline.core import landing
from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.devtools import local_airflow
from mlpipeline.features.export import EXPORT_ID_TIME, export_prefix
from mlpipeline.ingest import batches
from mlpipeline.ingest.revisions import load_revision, prepare_revision
from mlpipeline.ops.retention import KINDS
from mlpipeline.ops.retention.data_docs import clean_data_docs
from mlpipeline.ops.retention.exports import clean_exports
from mlpipeline.ops.retention.mlflow_runs import clean_mlflow_runs
from mlpipeline.ops.retention.raw import clean_raw_revisions
from mlpipeline.ops.retention.redis_snapshots import clean_redis_snapshots
from mlpipeline.ops.retention.report import Report
from mlpipeline.ops.retention.scores import vacuum_score_table
from mlpipeline.ops.retention.splits import clean_splits
from mlpipeline.ops.retention.warehouse_snapshots import maintain
from mlpipeline.scoring.score_table import read_scores, score_table_location
from mlpipeline.training import champion_alias, model_registry
from mlpipeline.training.candidates import Candidate
from mlpipeline.training.split import split_dataset
from mlpipeline.training.split_store import load_split, persist_split
from mlpipeline.training.train import train_candidate
from mlpipeline.warehouse import connect, lake
from tests.test_dag_integrity import parse_dags
from tests.test_export import DAY1, DAY2, DAY3, build_snapshot, expected_rows, export
from tests.test_ingest import HEADER
from tests.test_train_evaluate import LINEAGE, SPEC, synthetic_training_set

AGE = timedelta(days=30)


class Phases:
    """Marks the instant between the old and the recent artifacts."""

    def __init__(self, gap: float = 0.02) -> None:
        self.between: datetime | None = None
        self.gap = gap

    def mark(self) -> None:
        time.sleep(self.gap)
        self.between = datetime.now(UTC)
        time.sleep(self.gap)

    @property
    def now(self) -> datetime:
        """A `now` that makes everything before the mark older than AGE."""
        assert self.between is not None
        return self.between + AGE


def dry_real_again(clean: Callable[..., Report], state: Callable[[], Any]) -> Report:
    """Dry run (nothing changes, same plan), real run, second run (a no-op)."""
    before = state()
    dry = clean(dry_run=True)
    assert state() == before, "the dry run changed something"
    real = clean(dry_run=False)
    assert real.deleted, "nothing to delete: the test would prove nothing"
    assert real.deleted_items() == dry.deleted_items()
    assert real.kept == dry.kept
    after = state()
    again = clean(dry_run=False)
    assert again.deleted == [] and state() == after
    return real


# --- raw revisions ------------------------------------------------------------------------------


def _land(store: ObjectStore, day: date, rows: int, declared: int | None = None) -> None:
    body = [HEADER] + [
        f"t{day:%d}{i},c{i},m1,grocery,{10 + i}.50,EUR,DE,pos,{day}T0{i}:00:00Z"
        for i in range(rows)
    ]
    store.put_bytes(
        landing.day_prefix("transactions", day) + "part-00000.csv", "\n".join(body).encode()
    )
    landing.write_success(
        store,
        "transactions",
        day,
        [landing.DeclaredFile("part-00000.csv", rows if declared is None else declared)],
    )


def _ingest(
    settings: Settings, store: ObjectStore, day: date, rows: int, **kwargs: Any
) -> tuple[str, str, str]:
    _land(store, day, rows, **kwargs)
    prepared = prepare_revision(store, "transactions", day)
    with connect(settings) as con:
        status = load_revision(con, store, prepared, run_id="test")
    return prepared.batch_id, prepared.revision, status


def _promote(settings: Settings, batch_id: str, revision: str) -> None:
    with connect(settings) as con:
        batches.set_status(con, batch_id, revision, "validated", run_id="test")
        batches.promote(con, batch_id, revision, run_id="test")


@pytest.mark.unit
def test_raw_revisions_keep_current_quarantined_and_unpromoted(settings, local_store):
    d1, d2, d3 = date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)
    phases = Phases()
    superseded_old = _ingest(settings, local_store, d1, 3)
    _promote(settings, *superseded_old[:2])
    superseded_recent = _ingest(settings, local_store, d1, 2)
    _promote(settings, *superseded_recent[:2])
    quarantined = _ingest(settings, local_store, d1, 1, declared=5)
    assert quarantined[2] == "quarantined"
    discarded = _ingest(settings, local_store, d2, 1)
    with connect(settings) as con:
        batches.discard(con, discarded[0], discarded[1], run_id="test")
    failed = _ingest(settings, local_store, d2, 2)  # a run that stopped before its promote
    current_d2 = _ingest(settings, local_store, d2, 3)
    _promote(settings, *current_d2[:2])
    waiting = _ingest(settings, local_store, d3, 2)  # not promoted, no current: may still be
    phases.mark()
    current_d1 = _ingest(settings, local_store, d1, 4)
    _promote(settings, *current_d1[:2])

    def state() -> tuple:
        with connect(settings, read_only=True) as con:
            statuses = con.execute(
                "SELECT revision, status FROM meta.batches ORDER BY revision"
            ).fetchall()
            rows = con.execute(
                "SELECT revision, count(*) FROM raw.transactions GROUP BY 1 ORDER BY 1"
            ).fetchall()
            current = con.execute("SELECT count(*) FROM raw.transactions_current").fetchone()
        return statuses, rows, current, local_store.list("raw/")

    def clean(dry_run: bool) -> Report:
        with connect(settings) as con:
            return clean_raw_revisions(
                con, local_store, now=phases.now, max_age=AGE, dry_run=dry_run
            )

    current_rows_before = state()[2]
    report = dry_real_again(clean, state)

    gone = {superseded_old, discarded, failed}
    assert set(report.deleted_items()) == {f"{b}@{r}" for b, r, _ in gone}
    kept = {superseded_recent, quarantined, current_d1, current_d2, waiting}
    assert {f"{b}@{r}" for b, r, _ in kept} <= report.kept_items()
    statuses, rows, current_rows, keys = state()
    assert current_rows == current_rows_before
    status = dict(statuses)
    assert all(status[r] == "purged" for _, r, _ in gone)
    assert status[quarantined[1]] == "quarantined" and status[waiting[1]] == "ingested"
    assert {r for r, _ in rows} == {
        superseded_recent[1],
        quarantined[1],
        current_d1[1],
        current_d2[1],
        waiting[1],
    }
    for _, revision, _ in gone:
        assert not any(f"rev={revision}/" in key for key in keys)
    for _, revision, _ in kept:
        assert any(f"rev={revision}/" in key for key in keys)
    with connect(settings) as con:
        events = con.execute(
            "SELECT count(*) FROM meta.batch_events WHERE status = 'purged'"
        ).fetchone()[0]
        # The quarantined revision's rows and files are intact: an operator can still release it.
        batches.release(con, quarantined[0], quarantined[1], run_id="test")
        released = con.execute(
            "SELECT count(*) FROM raw.transactions_current WHERE revision = ?", [quarantined[1]]
        ).fetchone()[0]
    assert events == len(gone) and released == 1


# --- exports and Redis snapshots ----------------------------------------------------------------


@pytest.mark.integration
def test_exports_and_redis_snapshots_keep_current_previous_and_pinned(
    tmp_path, s3_store, redis_url
):
    db = build_snapshot(tmp_path / "w.duckdb", days=(DAY1, DAY2, DAY3), customers=40)
    store = s3_store

    def publish(manifest: dict, *, switch: bool = True) -> None:
        online.push_staged(redis_url, store, manifest)
        online.verify_staged(redis_url, manifest)
        if switch:
            online.switch(redis_url, manifest)

    phases = Phases()
    first = export(db, store, DAY1).manifest
    publish(first)
    second = export(db, store, DAY2).manifest
    publish(second)
    staged_only = export(db, store, DAY2).manifest  # verified, never switched in
    publish(staged_only, switch=False)
    replaced = export(db, store, DAY1).manifest  # an old re-export nobody pushed
    online.rollback(redis_url, store, reason="test")  # first is current again, and pinned
    phases.mark()
    pending = export(db, store, DAY3).manifest
    publish(pending)  # skipped while pinned: the pin's pending export
    newest_day3 = export(db, store, DAY3).manifest
    newest_day2 = export(db, store, DAY2).manifest
    in_flight = export_prefix(DAY3, f"{datetime.now(UTC):{EXPORT_ID_TIME}}-0000abcd")
    store.put_bytes(in_flight + "part-00000.parquet", b"being written")

    client = online.as_client(redis_url)

    def store_state() -> list[str]:
        return store.list("features/")

    def redis_state() -> list[bytes]:
        return sorted(client.keys("*"))

    exports = dry_real_again(
        lambda dry_run: clean_exports(
            store, redis_url, now=phases.now, max_age=AGE, dry_run=dry_run
        ),
        store_state,
    )
    assert exports.deleted_items() == sorted([staged_only["prefix"], replaced["prefix"]])
    kept = exports.kept_items()
    assert {first["prefix"], second["prefix"], pending["prefix"]} <= kept
    assert {newest_day3["prefix"], newest_day2["prefix"], in_flight} <= kept
    assert exports.kept["online: current"] == [first["prefix"]]
    assert exports.kept["online: previous (rollback target)"] == [second["prefix"]]
    assert exports.kept["online: pending export of the pin"] == [pending["prefix"]]

    snapshots = dry_real_again(
        lambda dry_run: clean_redis_snapshots(
            redis_url, now=phases.now, max_age=AGE, dry_run=dry_run
        ),
        redis_state,
    )
    assert snapshots.deleted_items() == [staged_only["export_id"]]
    assert snapshots.deleted[0]["keys"] == 40
    assert set(online.snapshot_exports(client)) == {
        first["export_id"],
        second["export_id"],
        pending["export_id"],
    }
    assert not list(client.scan_iter(match=online.entity_prefix(staged_only["export_id"]) + "*"))

    # Readers still get the current snapshot, and the rollback pin still works both ways.
    read = online.OnlineReader(redis_url).read(sorted(expected_rows(db, DAY1)))
    assert read.export_id == first["export_id"]
    assert read.rows == [expected_rows(db, DAY1)[k] for k in sorted(expected_rows(db, DAY1))]
    released = online.release(redis_url, store, switch_pending=True)
    assert released["switch"]["outcome"] == "switched"


# --- splits and MLflow runs ---------------------------------------------------------------------


@pytest.mark.integration
def test_splits_and_runs_of_champion_challenger_and_pin_are_kept(tmp_path, local_store):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    name = model_registry.MODEL_NAME
    phases = Phases()
    splits = [split_dataset(synthetic_training_set(1500, seed=s)) for s in range(1, 7)]
    for split in splits[:5]:
        persist_split(local_store, split)
    candidate = Candidate(
        name="first", estimator="logistic_regression", scale=True, include=("amount",)
    )
    versions = [
        train_candidate(
            split, candidate, feature_columns=SPEC, tracking_uri=uri, lineage=LINEAGE
        ).model_version
        for split in splits[:3]
    ]
    client = model_registry.client(uri)
    for version in versions:
        client.set_model_version_tag(name, version, model_registry.THRESHOLD_TAG, "0.5")
    champion_alias.promote(uri, versions[0])
    champion_alias.promote(uri, versions[1])
    champion_alias.rollback_champion(uri, reason="test")  # versions[0] pinned, [1] rolled back
    client.set_registered_model_alias(name, model_registry.CHALLENGER_ALIAS, versions[2])
    experiment = client.get_experiment_by_name(model_registry.EXPERIMENT).experiment_id

    def run(tags: dict[str, str]) -> str:
        created = client.create_run(experiment, tags=tags)
        client.set_terminated(created.info.run_id)
        return created.info.run_id

    old_first = run({"candidate": "first", "split_id": splits[3].split_id})
    old_untagged = run({})
    only_third = run({"candidate": "third"})
    phases.mark()
    recent_first = run({"candidate": "first"})
    recent_user = run({"split_id": splits[4].split_id})  # an old split reused by a new run
    persist_split(local_store, splits[5])

    def store_state() -> list[str]:
        return local_store.list("splits/")

    def runs_state() -> list[tuple[str, str]]:
        found = client.search_runs([experiment], run_view_type=ViewType.ALL)
        return sorted((r.info.run_id, r.info.lifecycle_stage) for r in found)

    split_report = dry_real_again(
        lambda dry_run: clean_splits(
            local_store, uri, now=phases.now, max_age=AGE, dry_run=dry_run
        ),
        store_state,
    )
    assert split_report.deleted_items() == [splits[3].prefix]
    reasons = {item: why for why, items in split_report.kept.items() for item in items}
    assert "alias champion" in reasons[splits[0].prefix]
    assert "rolled back from" in reasons[splits[1].prefix]
    assert "alias challenger" in reasons[splits[2].prefix]
    assert reasons[splits[4].prefix] == "used by a run within the age"
    assert reasons[splits[5].prefix] == "created within the age"
    assert load_split(local_store, splits[0].split_id).split_id == splits[0].split_id

    run_report = dry_real_again(
        lambda dry_run: clean_mlflow_runs(uri, now=phases.now, max_age=AGE, dry_run=dry_run),
        runs_state,
    )
    assert sorted(run_report.deleted_items()) == sorted([old_first, old_untagged])
    assert only_third in run_report.kept["newest run of its candidate"]
    assert {recent_first, recent_user} <= run_report.kept_items()
    stages = dict(runs_state())
    assert stages[old_first] == "deleted" and stages[only_third] == "active"
    # Registered versions and aliases are untouched; the champion still resolves.
    assert len(client.search_model_versions(f"name = '{name}'")) == 3
    assert model_registry.resolve_champion(uri).version == versions[0]
    assert champion_alias.champion_pin(uri).version == versions[0]


# --- score table versions -----------------------------------------------------------------------


def _scores(day: date, score: float) -> pa.Table:
    return pa.table(
        {
            "dt": pa.array([day] * 3, pa.date32()),
            "transaction_id": [f"t{i}" for i in range(3)],
            "score": [score] * 3,
        }
    )


@pytest.mark.parametrize(
    "store_fixture",
    [
        pytest.param("local_store", marks=pytest.mark.unit),
        pytest.param("s3_store", marks=pytest.mark.integration),
    ],
)
def test_score_table_vacuum_keeps_versions_within_the_age(request, store_fixture):
    store = request.getfixturevalue(store_fixture)
    location = score_table_location(store)

    def write(day: date, score: float) -> None:
        write_deltalake(
            location.uri,
            _scores(day, score),
            mode="overwrite",
            partition_by=["dt"],
            predicate=f"dt = '{day}'",
            storage_options=location.storage_options,
        )

    phases = Phases(gap=1.2)  # S3 times objects (and so Delta versions) to the second
    write_deltalake(
        location.uri,
        _scores(DAY1, 0.1),
        partition_by=["dt"],
        storage_options=location.storage_options,
    )  # version 0
    write(DAY2, 0.2)  # 1
    write(DAY1, 0.3)  # 2: day 1 re-scored; version 0's file is only in versions 0 and 1
    phases.mark()
    write(DAY2, 0.4)  # 3: day 2 re-scored; version 1's file is still in version 2

    def table_files() -> list[str]:
        return store.list("scores/")

    def clean(dry_run: bool) -> Report:
        return vacuum_score_table(store, now=phases.now, max_age=AGE, dry_run=dry_run)

    expected = read_scores(store).sort_values(["dt", "transaction_id"]).reset_index(drop=True)
    report = dry_real_again(clean, table_files)
    assert len(report.deleted) == 1 and report.deleted_items()[0].startswith("dt=2026-01-05/")
    current = read_scores(store).sort_values(["dt", "transaction_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(current, expected)
    assert set(current["score"]) == {0.3, 0.4}
    # Version 2 was the table at the start of the age: still readable; version 0 is not.
    assert set(read_scores(store, version=2)["score"]) == {0.3, 0.2}
    with pytest.raises(Exception, match="not found|No such file|NotFound"):
        DeltaTable(location.uri, version=0, storage_options=location.storage_options).to_pandas()


# --- Data Docs ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_data_docs_keep_the_newest_per_suite_and_subject_and_a_consistent_index(
    tmp_path, s3_store, monkeypatch
):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "tiny.json").write_text(
        json.dumps(
            {
                "name": "tiny",
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}
                ],
            }
        )
    )
    monkeypatch.setenv(quality.SUITES_ENV, str(suites))
    docs = quality.DataDocs(tmp_path / "data_docs", s3_store, index_limit=50)

    def check(subject: str) -> quality.DocsPage:
        frame = pd.DataFrame({"a": [1, 2]})
        return quality.run_suite("tiny", frame, subject=subject, docs=docs, run_name="test").page

    phases = Phases()
    a_old = [check("raw.transactions-2026-03-10") for _ in range(2)]
    b_only = check("raw.chargebacks-2026-03-10")
    phases.mark()
    a_new = check("raw.transactions-2026-03-10")

    def state() -> tuple:
        local = sorted(
            p.relative_to(docs.root).as_posix() for p in docs.root.rglob("*") if p.is_file()
        )
        return local, s3_store.list(quality.DOCS_PREFIX), (docs.root / "index.html").read_bytes()

    report = dry_real_again(
        lambda dry_run: clean_data_docs(docs, now=phases.now, max_age=AGE, dry_run=dry_run),
        state,
    )
    assert len(report.deleted) == 2
    for page in a_old:
        assert not page.local.exists() and not s3_store.exists(page.key)
    for page in (b_only, a_new):
        assert page.local.exists() and s3_store.exists(page.key)
    published = unquote(s3_store.get_bytes(quality.DOCS_PREFIX + "index.html").decode())
    for page in (*a_old, b_only, a_new):
        run_time = page.local.parent.name
        assert (run_time in published) == (page not in a_old)
    assert published == unquote((docs.root / "index.html").read_text())


# --- CLI and DAG --------------------------------------------------------------------------------


@pytest.mark.integration
def test_warehouse_snapshots_keep_the_current_one_and_those_models_were_trained_from(settings):
    """A model version trained from an old snapshot keeps it readable (time travel), the other
    old snapshots go with the files only they held, a file no commit wrote goes once old, and
    nothing outside the data path is touched."""
    from sklearn.dummy import DummyClassifier

    from tests.champion import register_champion

    with connect(settings) as con:
        con.execute("CREATE TABLE marts.history AS SELECT range AS n FROM range(3000)")
        trained_from = lake.snapshot_id(con)
        for step in range(4):
            con.execute("DELETE FROM marts.history WHERE n % 4 = ?", [step])
            con.execute("INSERT INTO marts.history SELECT 10000 + range FROM range(500)")
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    version = register_champion(settings, model, date(2026, 1, 4))
    model_registry.client(settings.mlflow_tracking_uri).set_model_version_tag(
        model_registry.MODEL_NAME, version, model_registry.SNAPSHOT_TAG, str(trained_from)
    )
    data_path = Path(settings.warehouse_data_path)
    orphan = data_path / "marts" / "history" / "ducklake-left-by-a-dead-writer.parquet"
    orphan.write_bytes(b"PAR1")
    outside = settings.local_store_root / "elsewhere.parquet"
    outside.write_bytes(b"PAR1")
    later = datetime.now(UTC) + timedelta(days=60)

    def snapshots() -> list[int]:
        with connect(settings, read_only=True) as con:
            return [r[0] for r in con.execute("SELECT snapshot_id FROM ducklake_snapshots('lake')")
                    .fetchall()]  # fmt: skip

    def clean(dry_run: bool) -> Report:
        with connect(settings) as con:
            return maintain(
                con, settings.mlflow_tracking_uri, now=later, max_age=AGE, dry_run=dry_run
            )

    with connect(settings, read_only=True) as con:
        live = con.execute("SELECT sum(n) FROM marts.history").fetchall()
    before, files = snapshots(), set(data_path.rglob("*.parquet"))
    current = before[-1]
    plan = clean(dry_run=True)
    assert snapshots() == before and set(data_path.rglob("*.parquet")) == files
    report = clean(dry_run=False)
    assert report.deleted_items() == plan.deleted_items() and report.kept == plan.kept
    assert report.kept == {
        f"training set of {model_registry.MODEL_NAME} version {version}": [
            f"snapshot {trained_from}"
        ],
        "the current snapshot": [f"snapshot {current}"],
    }
    expired = {int(item.split()[1]) for item in report.deleted_items()}
    assert expired == set(before) - {trained_from, current} and len(expired) >= 8
    after = snapshots()
    assert trained_from in after and current in after and not expired & set(after)
    assert not orphan.exists() and outside.exists()
    assert files - set(data_path.rglob("*.parquet")), "no file the expired snapshots held went"
    with connect(settings, read_only=True) as con:
        at = f"AT (VERSION => {trained_from})"
        assert con.execute(f"SELECT count(*) FROM marts.history {at}").fetchall() == [(3000,)]
        assert con.execute("SELECT sum(n) FROM marts.history").fetchall() == live


@pytest.mark.integration
def test_cli_dry_run_reports_every_kind(settings, redis_url, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    cli.main(["retention", "--dry-run"])
    reports = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in reports] == list(KINDS)
    assert all(r["dry_run"] and r["deleted_count"] == 0 for r in reports)


@pytest.mark.unit
def test_retention_dag_parses_with_one_task_per_kind(tmp_path):
    parsed = parse_dags(tmp_path / "dagbag", PROJECT_ROOT / "dags" / "fraud_retention.py")
    assert parsed["errors"] == {} and parsed["heavy"] == []
    assert parsed["opened"] == []
    dag = parsed["dags"]["fraud_retention"]
    assert set(dag["tasks"]) == {f"clean_{kind}" for kind in KINDS}
    assert dag["pools"]["clean_raw_revisions"] == "warehouse"
    assert dag["pools"]["clean_exports"] == "default_pool"
    assert dag["params"] == ["dry_run"] and dag["doc"]


@pytest.mark.e2e
def test_retention_dag_runs_every_task_in_airflow(tmp_path, redis_url):
    """A real `airflow dags test` (dry run): params, pools and reports work inside Airflow."""
    data_dir = tmp_path / "data"
    settings = Settings.under(data_dir).model_copy(update={"redis_url": redis_url})
    env = local_airflow.airflow_env(settings, {"REDIS_URL": redis_url})
    local_airflow.init(env)
    day = date(2026, 3, 10)
    code = local_airflow.run(
        ["dags", "test", "fraud_retention", day.isoformat(), "-c", '{"dry_run": true}'],
        env,
        check=False,
    )
    states = local_airflow.task_states("fraud_retention", day, env)
    assert code == 0 and states == {f"clean_{kind}": "success" for kind in KINDS}
