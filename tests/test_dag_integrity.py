"""DAG integrity: every DAG file imports cleanly, the nightly has its stages in order, and
parsing does no heavy work and reads no file of ours but the dbt manifest Cosmos renders from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpipeline.core.config import CONF_DIR, PROJECT_ROOT, Settings
from mlpipeline.devtools.local_airflow import airflow_env
from mlpipeline.features import dbt_project, transform
from tests.airflow_probe import run_probe

pytestmark = pytest.mark.unit

PROBE = r"""
import json, sys, time, traceback
# Every file opened under the watched folders (configuration, dbt project, data; not Airflow's
# home), and whether Cosmos opened it.
watched, skipped = tuple(sys.argv[2].split(",")), sys.argv[3]
opened = set()
def audit(event, args):
    if event == "open" and isinstance(args[0], str):
        path = args[0]
        if path.startswith(watched) and not path.startswith(skipped):
            cosmos = any("/cosmos/" in f.filename for f in traceback.extract_stack())
            opened.add((path, "cosmos" if cosmos else "other"))
sys.addaudithook(audit)
from airflow.dag_processing.dagbag import DagBag
started = time.monotonic()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.monotonic() - started
# dbt-core itself must not load: Cosmos renders the dbt tasks from the manifest setup parsed
# (cosmos.dbt, Cosmos' own manifest reader, is expected).
HEAVY = ("great_expectations", "mlflow", "sklearn", "dbt", "deltalake", "openlineage.common")
heavy = sorted(m for m in HEAVY if m in sys.modules)
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "trigger_rules": {t.task_id: str(getattr(t.trigger_rule, "value", t.trigger_rule))
                          for t in dag.tasks},
        "pools": {t.task_id: t.pool for t in dag.tasks},
        "operators": {t.task_id: type(t).__name__ for t in dag.tasks},
        "doc": bool(dag.doc_md),
        "params": sorted(dag.params.keys()),
        "full_refresh": {t.task_id: t.full_refresh for t in dag.tasks
                         if hasattr(t, "full_refresh")},
        "pre_execute": {t.task_id: getattr(getattr(t, "_pre_execute_hook", None), "__name__", None)
                        for t in dag.tasks},
    }
print(json.dumps({"errors": bag.import_errors, "dags": dags, "heavy": heavy, "seconds": seconds,
                  "opened": sorted(opened)}))
"""


def parse_dags(data_dir: Path, dags: Path = PROJECT_ROOT / "dags") -> dict:
    """What a DagBag of `dags` (a folder or one file) holds, as Airflow parses it with a data
    folder at `data_dir`, and which watched files the parse opened."""
    settings = Settings.under(data_dir)
    watched = ",".join(str(p) for p in (CONF_DIR, settings.dbt_project_dir, settings.data_dir))
    return run_probe(PROBE, airflow_env(settings), dags, watched, settings.data_dir / "airflow")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    transform.ensure_manifest()  # setup's step: the nightly's dbt tasks are rendered from it
    return parse_dags(tmp_path_factory.mktemp("dagbag"))


PLUGINS_PROBE = r"""
import json, sys
from airflow import plugins_manager
info = plugins_manager.get_plugin_info()
print(json.dumps({
    "plugins": sorted(p["name"] for p in info),
    "sources": sorted({str(p["source"]) for p in info}),
    "errors": plugins_manager.get_import_errors(),
    "timetables": sorted(plugins_manager.get_timetables_plugins()),
    "bare": sorted(set(sys.argv[1].split(",")) & set(sys.modules)),
}))
"""


def test_plugins_register_once_from_one_module_and_nothing_under_a_bare_name(tmp_path):
    env = airflow_env(Settings.under(tmp_path))
    bare = "alerts,dbt_nodes,pipeline_assets,processing_day,stage_runner,ui_links,warehouse_access"
    loaded = run_probe(PLUGINS_PROBE, env, bare)
    ours = {"processing_day", "mlpipeline_ui", "warehouse_access"}
    assert ours <= set(loaded["plugins"])
    assert loaded["errors"] == {}
    assert [s for s in loaded["sources"] if "mlpipeline" in s] == [
        "$PLUGINS_FOLDER/mlpipeline_airflow_plugins.py"
    ]
    assert "mlpipeline_airflow.processing_day.ProcessingDayTimetable" in loaded["timetables"]
    assert loaded["bare"] == []


def test_every_dag_file_imports_without_error(parsed):
    assert parsed["errors"] == {}
    assert "fraud_nightly" in parsed["dags"]


def test_parsing_does_no_heavy_work(parsed):
    assert parsed["heavy"] == []


def test_parsing_reads_no_file_but_the_dbt_manifest(parsed):
    """A parse (every DAG processor loop) opens no configuration, dbt code or data file: only
    Cosmos reads, the manifest setup wrote and the dbt_project.yml beside it."""
    project = dbt_project.project_root(None)
    cosmos = {(str(dbt_project.manifest_path(project)), "cosmos")}
    assert cosmos <= {tuple(o) for o in parsed["opened"]}
    assert {tuple(o) for o in parsed["opened"]} <= cosmos | {
        (str(project / "dbt_project.yml"), "cosmos")
    }


def _ancestors(tasks: dict[str, list[str]], task_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(tasks[task_id])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(tasks[current])
    return seen


def test_nightly_stages_are_in_order(parsed):
    tasks = parsed["dags"]["fraud_nightly"]["tasks"]

    def before(a: str, b: str) -> bool:
        return a in _ancestors(tasks, b)

    for ds in ("transactions", "chargebacks"):
        g = f"ingest_{ds}"
        assert before(f"{g}.prepare_{ds}", f"{g}.check_raw_{ds}")
        assert before(f"{g}.check_raw_{ds}", f"{g}.promote_{ds}")
        assert before(f"{g}.promote_{ds}", "dbt_build.stg_transactions_model_build")
    assert before("dbt_build.training_set_model_build", "check_snapshot")
    chain = [
        "check_snapshot",
        "online.export_snapshot",
        "online.push_staged",
        "online.verify_staged",
        "switch_online",
    ]
    assert all(before(a, b) for a, b in zip(chain, chain[1:], strict=False))
    training = [
        "check_snapshot",
        "training.check_training_set",
        "training.split",
        "training.train",
        "training.evaluate_register",
        "score",
        "switch_online",
    ]
    assert all(before(a, b) for a, b in zip(training, training[1:], strict=False))
    # switch_online is the last real task; the watcher only turns failures into a failed run.
    assert set(tasks) - _ancestors(tasks, "watcher") == {"watcher"}


def test_monitoring_follows_scoring_and_never_holds_up_the_switch(parsed):
    nightly = parsed["dags"]["fraud_nightly"]
    tasks = nightly["tasks"]
    assert set(tasks["monitor"]) == {"resolve_day", "score"}
    assert nightly["trigger_rules"]["monitor"] == "all_success"
    assert "monitor" not in _ancestors(tasks, "switch_online")
    assert "monitor" in tasks["watcher"]


def test_final_tasks_run_whatever_happened_before(parsed):
    nightly = parsed["dags"]["fraud_nightly"]
    rules = nightly["trigger_rules"]
    assert rules["ready_to_score"] == "all_done"
    assert rules["score"] == "all_success"
    assert set(nightly["tasks"]["ready_to_score"]) == {
        "training.evaluate_register",
        "online.export_snapshot",
    }
    assert rules["switch_online"] == "all_done"
    assert rules["watcher"] == "one_failed"
    assert "check_snapshot" in nightly["tasks"]["score"]


def test_every_duckdb_opener_uses_the_warehouse_pool(parsed):
    pools = parsed["dags"]["fraud_nightly"]["pools"]
    operators = parsed["dags"]["fraud_nightly"]["operators"]
    dbt_tasks = [t for t in pools if t.startswith("dbt_build.") and operators[t] != "EmptyOperator"]
    assert dbt_tasks
    for task_id in (
        "ingest_transactions.load_transactions",
        *dbt_tasks,
        "check_snapshot",
        "online.export_snapshot",
        "training.check_training_set",
        "training.split",
        "score",
        "monitor",
    ):
        assert pools[task_id] == "warehouse", task_id
    assert pools["ingest_transactions.prepare_transactions"] != "warehouse"
    # dbt opens the warehouse itself: each dbt task checks it first (and warns of a stale
    # manifest, which no parse checks).
    hooks = parsed["dags"]["fraud_nightly"]["pre_execute"]
    assert {hooks[t] for t in dbt_tasks} == {"before_dbt_node"}


def _dbt_nodes() -> dict[str, dict]:
    manifest = json.loads(dbt_project.manifest_path().read_text())
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["package_name"] == "fraud_features" and node["resource_type"] in ("model", "test")
    }


def _ephemeral(node: dict) -> bool:
    return node["config"]["materialized"] == "ephemeral"


def test_dbt_models_and_tests_are_tasks_in_dependency_order(parsed):
    """Every model is one `dbt build` task (the model, then its own tests), after what it refs
    and before the snapshot gate; a test with several parents is a task of its own. An
    ephemeral model (compiled into the models that ref it) is a placeholder that runs nothing."""
    tasks = parsed["dags"]["fraud_nightly"]["tasks"]
    operators = parsed["dags"]["fraud_nightly"]["operators"]
    nodes = _dbt_nodes()
    models = {name for name, node in nodes.items() if node["resource_type"] == "model"}
    assert {"customer_lifetime", "customer_snapshot", "transaction_features"} <= models
    assert {"int_snapshot_cutoffs", "int_customer_windows"} <= models
    for model in models:
        build = f"dbt_build.{model}_model_build"
        expected = "EmptyOperator" if _ephemeral(nodes[model]) else "DbtBuildLocalOperator"
        assert operators[build] == expected, build
        assert build in _ancestors(tasks, "check_snapshot")
        for parent in nodes[model]["depends_on"]["nodes"]:
            kind, _, *name = parent.split(".")  # model.<pkg>.<name>, source.<pkg>.<src>.<table>
            upstream = (
                f"dbt_build.{name[0]}_model_build"
                if kind == "model"
                else f"dbt_build.{'_'.join(name)}_source"
            )
            assert upstream in _ancestors(tasks, build), (build, parent)
    detached = {
        name
        for name, node in nodes.items()
        if node["resource_type"] == "test"
        and len({p for p in node["depends_on"]["nodes"] if p.startswith("model.")}) > 1
    }
    assert detached and all(f"dbt_build.{name}_test" in tasks for name in detached)
    freshness = ("raw_transactions_current_source", "raw_chargebacks_current_source")
    for source in freshness:
        assert f"dbt_build.{source}" in _ancestors(tasks, "check_snapshot")


def test_the_nightly_declares_its_params(parsed):
    params = parsed["dags"]["fraud_nightly"]["params"]
    assert {"day", "train", "push_online", "full_refresh"} <= set(params)
    refresh = parsed["dags"]["fraud_nightly"]["full_refresh"]
    assert refresh and set(refresh.values()) == {"{{ params.full_refresh }}"}


def test_cosmos_telemetry_is_off_at_parse(parsed):
    params = parsed["dags"]["fraud_nightly"]["params"]
    assert "__cosmos_telemetry_metadata__" not in params
