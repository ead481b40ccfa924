"""The nightly's dbt tasks (Cosmos) run real dbt against the real DuckLake warehouse.

The tasks come from parsing the real `fraud_nightly` DAG file, in a subprocess with this test's
Airflow environment, and execute there as a worker would (templates rendered from a context
whose `resolve_day` XCom is day D). One task builds the snapshot incrementally for D; then a
duplicate transaction makes a staging test fail. After each task another process must be able to
write to the warehouse, and the failing task's log must name the test and its failing rows.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.devtools.local_airflow import airflow_env
from mlpipeline.features import dbt_project, transform
from mlpipeline.warehouse import connect
from tests.dbt_fixtures import background, load_raw

pytestmark = pytest.mark.integration

BUILT = date(2026, 2, 7)
DAY = date(2026, 2, 8)

RUNNER = r"""
import json, logging, subprocess, sys
from airflow.dag_processing.dagbag import DagBag

from pathlib import Path
from mlpipeline import warehouse
from mlpipeline.core.config import Settings

day, data_dir, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
settings = Settings.under(Path(data_dir))
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())

logging.getLogger("mlpipeline.features.transform").addHandler(Keep())
logging.getLogger("mlpipeline.features.transform").setLevel(logging.INFO)

class TaskInstance:
    def xcom_pull(self, task_ids=None, **_):
        assert task_ids == "resolve_day", task_ids
        return day

class DagRun:
    conf = {}

dag = DagBag(dag_folder=sys.argv[4]).dags["fraud_nightly"]
outcomes = {}
for task_id, sql_before in steps:
    if sql_before:
        with warehouse.connect(settings) as con:
            con.execute(sql_before)
    task = dag.get_task(task_id)
    context = {
        "ti": TaskInstance(), "dag_run": DagRun(), "run_id": f"test__{day}",
        "params": dag.params.dump(),
        "task": task,
    }
    task.render_template_fields(context)
    before = len(records)
    try:
        task.execute(context)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    writer = (
        "import sys; from pathlib import Path; from mlpipeline import warehouse; "
        "from mlpipeline.core.config import Settings\n"
        "with warehouse.connect(Settings.under(Path(sys.argv[1]))) as con:\n"
        "    con.execute('CREATE OR REPLACE TABLE meta.probe AS SELECT 1 AS written')"
    )
    probe = subprocess.run(
        [sys.executable, "-c", writer, data_dir], capture_output=True, text=True
    )
    outcomes[task_id] = {
        "pool": task.pool,
        "vars": task.vars,
        "full_refresh": getattr(task, "full_refresh", None),
        "error": error,
        "log": records[before:],
        "other_process_writes_warehouse": probe.returncode == 0,
        "probe_error": probe.stderr[-300:],
    }
print(json.dumps(outcomes))
"""


def _run_tasks(settings: Settings, steps: list[tuple[str, str | None]]) -> dict:
    """Run the DAG's tasks in order in one worker-like process; a step's SQL runs before it."""
    env = airflow_env(settings, {"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            DAY.isoformat(),
            str(settings.data_dir),
            json.dumps(steps),
            str(PROJECT_ROOT / "dags"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> dict:
    transform.ensure_manifest()
    root = tmp_path_factory.mktemp("cosmos")
    settings = Settings.under(root)
    transactions, chargebacks = background(date(2026, 1, 1), DAY)
    warehouse.create(settings)
    with connect(settings) as con:
        load_raw(con, "transactions", transactions)
        load_raw(con, "chargebacks", chargebacks)
    transform.build(BUILT, settings=settings, full_refresh=True)
    # The producer then delivers one of D's transactions twice, in a later file of its batch.
    duplicate = (
        "INSERT INTO raw.transactions SELECT * REPLACE ('part-00001.csv' AS source_file) "
        f"FROM raw.transactions WHERE dt = DATE '{DAY}' ORDER BY source_row LIMIT 1"
    )
    outcomes = _run_tasks(
        settings,
        [
            ("dbt_build.customer_lifetime_model_build", None),
            ("dbt_build.customer_snapshot_model_build", None),
            ("dbt_build.stg_transactions_model_build", duplicate),
        ],
    )
    with connect(settings, read_only=True) as con:
        cutoffs = dict(
            con.execute(
                "SELECT cutoff_date, count(DISTINCT dbt_invocation_id) "
                "FROM features.customer_snapshot GROUP BY cutoff_date"
            ).fetchall()
        )
        invocations = con.execute(
            "SELECT count(DISTINCT dbt_invocation_id) FROM features.customer_snapshot"
        ).fetchone()[0]
    failed = {k: outcomes.pop(k) for k in ["dbt_build.stg_transactions_model_build"]}
    built = outcomes
    return {"built": built, "failed": failed, "cutoffs": cutoffs, "invocations": invocations}


def test_a_model_task_builds_the_processing_day_incrementally(nightly: dict) -> None:
    task = nightly["built"]["dbt_build.customer_snapshot_model_build"]
    assert task["error"] is None
    assert task["pool"] == "warehouse"
    assert task["vars"] == {"processing_day": DAY.isoformat()}
    assert task["full_refresh"] == "False"  # a run without conf {"full_refresh": true}
    assert max(nightly["cutoffs"]) == DAY
    # The full build wrote every cutoff up to BUILT in one invocation; the task added D alone.
    assert nightly["invocations"] == 2 and nightly["cutoffs"][DAY] == 1


def test_another_process_writes_the_warehouse_after_every_task(nightly: dict) -> None:
    for outcome in [*nightly["built"].values(), *nightly["failed"].values()]:
        assert outcome["other_process_writes_warehouse"], outcome["probe_error"]


def test_a_failing_dbt_test_fails_its_task_naming_the_test_and_rows(nightly: dict) -> None:
    task = nightly["failed"]["dbt_build.stg_transactions_model_build"]
    assert task["error"] is not None
    assert "unique_stg_transactions_transaction_id" in task["error"]
    (line,) = [m for m in task["log"] if "unique_stg_transactions_transaction_id" in m]
    assert "fail, 1 failing rows" in line
    assert "row 1: unique_field='bg-" in line and "n_records=2" in line


def test_manifest_is_rebuilt_only_when_the_dbt_code_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    project = tmp_path / "dbt_project"
    shutil.copytree(
        transform.Settings.from_env().dbt_project_dir,
        project,
        ignore=shutil.ignore_patterns("target", "logs"),
    )
    assert not dbt_project.manifest_is_current(project)
    path = transform.ensure_manifest(project)
    nodes = json.loads(path.read_text())["nodes"]
    assert "model.fraud_features.customer_snapshot" in nodes
    assert dbt_project.manifest_is_current(project)
    parsed_at = path.stat().st_mtime_ns
    assert transform.ensure_manifest(project).stat().st_mtime_ns == parsed_at  # not re-parsed
    assert transform.warn_if_manifest_stale(project)
    model = project / "models" / "marts" / "training_set.sql"
    model.write_text(model.read_text() + "\n-- changed\n")
    assert not dbt_project.manifest_is_current(project)
    # A DAG parse no longer checks; each dbt task says so in its log before dbt runs.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=transform.log.name):
        assert not transform.warn_if_manifest_stale(project)
    warnings = [r.getMessage() for r in caplog.records if r.name == transform.log.name]
    assert any("older dbt code" in w and "`mlpipeline dbt-manifest`" in w for w in warnings), (
        warnings
    )
    assert transform.ensure_manifest(project).stat().st_mtime_ns != parsed_at  # setup re-parses
    assert transform.warn_if_manifest_stale(project)
    assert not list(path.parent.glob(".parse-*")), "the parse's work folder is cleaned up"
