"""An analyst adds an online feature with dbt alone, and it reaches everything downstream.

On a copy of dbt_project/ the test does what dbt_project/README.md tells an analyst to do: compute
`amount_min_30d` in int_customer_windows.sql, declare it under meta.online in
customer_snapshot.yml and add it to the contracts of the three tables that carry the online
features. Then, with no Python change, the column must show up in the training set, among the
inputs of a model trained by `mlpipeline.training.train` (and move its predictions), and in the
vectors the online reader gets from Redis after the real export, push, verify and switch.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.features import dbt_project, transform
from mlpipeline.features.export import export_snapshot
from mlpipeline.online import OnlineReader, push_staged, switch, verify_staged
from mlpipeline.training import model_registry
from mlpipeline.training.candidates import Candidate
from mlpipeline.training.split import split_dataset
from mlpipeline.training.split_store import read_training_set
from mlpipeline.training.train import train_candidate
from mlpipeline.warehouse import connect
from tests.dbt_fixtures import background, load_raw

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 1, 1)
CUTOFF = date(2026, 2, 28)
COLUMN = "amount_min_30d"


def _insert_after(path: Path, anchor: str, line: str) -> None:
    text = path.read_text()
    assert text.count(anchor) == 1, f"{path.name} changed shape"
    path.write_text(text.replace(anchor, anchor + line))


def _add_column(project: Path) -> None:
    """The analyst's whole change: one aggregate in the SQL, its declaration in meta.online and
    its line in the contracts of the three tables that carry the online features."""
    models = project / "models"
    _insert_after(
        models / "intermediate" / "int_customer_windows.sql",
        "        max(case when in_30d then amount end) as amount_max_30d,\n",
        f"        min(case when in_30d then amount end) as {COLUMN},\n",
    )
    _insert_after(
        models / "features" / "customer_snapshot.yml",
        '            - {name: amount_max_30d, type: "DECIMAL(18,2)", default: null}\n',
        f'            - {{name: {COLUMN}, type: "DECIMAL(18,2)", default: null}}\n',
    )
    contract = f'      - {{name: {COLUMN}, data_type: "DECIMAL(18,2)"}}\n'
    _insert_after(
        models / "features" / "customer_snapshot.yml",
        "      - name: amount_max_30d\n"
        "        description: Largest amount (EUR) over the last 30 days; null without transactions"
        " in the window.\n"
        "        data_type: DECIMAL(18,2)\n",
        contract,
    )
    for table in ("features/transaction_features.yml", "marts/training_set.yml"):
        _insert_after(
            models / table, '      - {name: amount_max_30d, data_type: "DECIMAL(18,2)"}\n', contract
        )


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("add_column")
    project = root / "dbt_project"
    shutil.copytree(
        Settings.from_env().dbt_project_dir,
        project,
        ignore=shutil.ignore_patterns("target", "logs"),
    )
    _add_column(project)
    settings = Settings.under(root / "data").model_copy(update={"dbt_project_dir": project})
    transactions, chargebacks = background(FIRST_DAY, CUTOFF, customers=60, seed=11)
    warehouse.create(settings)
    with connect(settings) as con:
        load_raw(con, "transactions", transactions)
        load_raw(con, "chargebacks", chargebacks)
    transform.build(CUTOFF, settings=settings, full_refresh=True)
    with connect(settings, read_only=True) as con:
        training = read_training_set(con, CUTOFF)
        snapshot = dict(
            con.execute(
                f"SELECT customer_id, {COLUMN} FROM features.customer_snapshot "
                "WHERE cutoff_date = ?",
                [CUTOFF],
            ).fetchall()
        )
        types = {
            f"{schema}.{table}": data_type
            for schema, table, data_type in con.execute(
                "SELECT table_schema, table_name, data_type FROM information_schema.columns "
                "WHERE column_name = ?",
                [COLUMN],
            ).fetchall()
        }
        recomputed = dict(
            con.execute(
                "SELECT customer_id, min(amount) FROM raw.transactions_current "
                "WHERE event_ts >= ? AND event_ts < ? GROUP BY customer_id",
                [CUTOFF - timedelta(days=29), CUTOFF + timedelta(days=1)],
            ).fetchall()
        )
    return {
        "settings": settings,
        "project": project,
        "spec": dbt_project.online_spec(project),
        "training": training,
        "snapshot": snapshot,
        "recomputed": recomputed,
        "types": types,
    }


def test_the_column_is_declared_in_the_copy_only(edited: dict) -> None:
    assert COLUMN in [f.name for f in edited["spec"].features]
    assert COLUMN not in [f.name for f in dbt_project.online_spec().features]


def test_the_column_reaches_the_snapshot_and_the_training_set(edited: dict) -> None:
    assert edited["snapshot"] and edited["snapshot"] == {
        customer: value for customer, value in edited["recomputed"].items()
    }
    training = edited["training"]
    assert COLUMN in training.columns
    known = training[training["snapshot_cutoff"].notna()]
    assert known[COLUMN].notna().sum() > 0
    assert edited["types"] == {
        "features.customer_snapshot": "DECIMAL(18,2)",
        "features.transaction_features": "DECIMAL(18,2)",
        "marts.training_set": "DECIMAL(18,2)",
    }


def test_the_column_is_an_input_of_the_trained_model(edited: dict) -> None:
    settings, spec = edited["settings"], edited["spec"]
    split = split_dataset(
        edited["training"], strategy="stratified", ratios=(0.6, 0.2, 0.2), min_part_rows=50
    )
    candidate = Candidate(
        name="logistic_regression", estimator="logistic_regression", params={}, scale=True
    )
    result = train_candidate(
        split,
        candidate,
        feature_columns=spec.features,
        tracking_uri=settings.mlflow_tracking_uri,
        lineage={
            "training_cutoff": CUTOFF.isoformat(),
            "batch_revisions": "test",
            "dbt_manifest_hash": dbt_project.manifest_hash(edited["project"]),
            "git_commit": "test",
        },
    )
    with model_registry.tracking(settings.mlflow_tracking_uri) as mlflow:
        inputs = mlflow.models.get_model_info(result.model_uri).signature.inputs.input_names()
    assert COLUMN in inputs
    model = model_registry.load_version(settings.mlflow_tracking_uri, result.model_version)
    rows = split.validation.drop(columns=[split.label]).head(20)
    moved = rows.assign(**{COLUMN: rows[COLUMN].map(lambda v: Decimal("5000.00"))})
    assert (model.predict_proba(rows)[:, 1] != model.predict_proba(moved)[:, 1]).any()


def test_the_column_reaches_redis(edited: dict, redis_url: str, tmp_path: Path) -> None:
    settings, spec = edited["settings"], edited["spec"]
    store = LocalStore(tmp_path / "objectstore")
    with connect(settings, read_only=True) as con:
        manifest = export_snapshot(
            con, store, CUTOFF, spec, dbt_project.manifest_hash(edited["project"])
        ).manifest
    assert COLUMN in [c["name"] for c in manifest["columns"]]
    push_staged(redis_url, store, manifest)
    verify_staged(redis_url, manifest)
    switch(redis_url, manifest)
    customers = sorted(edited["snapshot"])
    read = OnlineReader(redis_url).read([*customers, "never-seen"])
    served = {c: row[COLUMN] for c, row in zip(customers, read.rows, strict=False)}
    assert served == {c: float(v) for c, v in edited["snapshot"].items()}
    assert read.known[-1] is False and read.rows[-1][COLUMN] is None
