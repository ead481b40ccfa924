"""Assets and alert wiring as Airflow parses them (a real DagBag): the nightly's publishing tasks
carry their outlets, the example consumer is scheduled on the scores asset, every task but the
watcher alerts on failure; and the asset module's extras say what was published."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from mlpipeline.core.config import PROJECT_ROOT, Settings
from mlpipeline.devtools.local_airflow import airflow_env
from mlpipeline.features import export, transform
from mlpipeline.monitoring import metrics_table
from mlpipeline.scoring import score_table, scores_consumer
from tests.airflow_probe import run_probe

pytestmark = pytest.mark.unit

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset, AssetAlias
bag = DagBag(dag_folder=sys.argv[1])

def outlet(o):
    kind = "alias" if isinstance(o, AssetAlias) else "asset"
    return {"kind": kind, "name": o.name, "uri": getattr(o, "uri", None)}

def callbacks(value):
    return value if isinstance(value, list) else [value] if value else []

dags = {}
for dag_id, dag in bag.dags.items():
    condition = getattr(dag.timetable, "asset_condition", None)
    dags[dag_id] = {
        "schedule": outlet(condition) if isinstance(condition, Asset) else None,
        "paused_upon_creation": dag.is_paused_upon_creation,
        "doc": dag.doc_md or "",
        "outlets": {t.task_id: [outlet(o) for o in t.outlets] for t in dag.tasks if t.outlets},
        "callbacks": {
            t.task_id: [
                {"type": type(c).__name__, "prepared_from": getattr(c, "prepared_from", None)}
                for c in callbacks(t.on_failure_callback)
            ]
            for t in dag.tasks
        },
    }
print(json.dumps({"errors": bag.import_errors, "dags": dags}))
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.under(tmp_path_factory.mktemp("assets"))


def _parse(env: dict[str, str]) -> dict:
    result = run_probe(PROBE, env, PROJECT_ROOT / "dags")
    assert result["errors"] == {}
    return result["dags"]


@pytest.fixture(scope="module")
def parsed(settings: Settings) -> dict:
    transform.ensure_manifest()
    env = airflow_env(settings)
    env.pop("REDIS_URL", None)
    return _parse(env)


def test_the_consumer_is_scheduled_on_the_scores_table_and_created_paused(parsed):
    consumer = parsed["example_scores_consumer"]
    assert consumer["schedule"] == {
        "kind": "asset",
        "name": "fraud.scores",
        "uri": f"fraud-pipeline://objectstore/{score_table.SCORE_TABLE_KEY}",
    }
    # No override: DAGS_ARE_PAUSED_AT_CREATION decides, as for every DAG of the project.
    assert consumer["paused_upon_creation"] is None
    assert "example" in consumer["doc"].lower() and "fraud.scores" in consumer["doc"]


def _asset(name: str, path: str) -> list[dict]:
    return [{"kind": "asset", "name": name, "uri": f"fraud-pipeline://{path}"}]


def test_the_nightly_publishing_tasks_carry_their_outlets(parsed):
    assert parsed["fraud_nightly"]["outlets"] == {
        "ingest_transactions.promote_transactions": _asset(
            "fraud.raw.transactions", "warehouse/raw/transactions_current"
        ),
        "ingest_chargebacks.promote_chargebacks": _asset(
            "fraud.raw.chargebacks", "warehouse/raw/chargebacks_current"
        ),
        "online.export_snapshot": _asset(
            "fraud.snapshot_export", f"objectstore/{export.EXPORT_ROOT}"
        ),
        "score": _asset("fraud.scores", f"objectstore/{score_table.SCORE_TABLE_KEY}"),
        "monitor": _asset("fraud.monitoring", f"objectstore/{metrics_table.METRICS_TABLE_KEY}"),
        "switch_online": _asset("fraud.online_snapshot", "online-store/customer_snapshot"),
        "training.evaluate_register": [
            {"kind": "alias", "name": "fraud.champion_changes", "uri": None}
        ],
    }


def test_assets_stay_the_same_when_the_deployment_moves(parsed, tmp_path):
    """Another data folder, a bucket, another Redis: Airflow would retire an asset whose URI
    changed and fail the task still emitting it, so the outlets must not change."""
    env = airflow_env(Settings.under(tmp_path))
    env.update(
        {
            "MLPIPELINE_BUCKET": "elsewhere",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "REDIS_URL": "redis://user:secret@redis.internal:6380/2",
        }
    )
    moved = _parse(env)
    for dag_id in ("fraud_nightly", "example_scores_consumer"):
        assert moved[dag_id]["outlets"] == parsed[dag_id]["outlets"]
        assert moved[dag_id]["schedule"] == parsed[dag_id]["schedule"]
    assert "secret" not in json.dumps(moved)


def test_every_task_alerts_on_failure_once(parsed):
    nightly = parsed["fraud_nightly"]["callbacks"]
    alerting = {t for t, callbacks in nightly.items() if callbacks}
    assert alerting == set(nightly) - {"watcher"}, "the watcher's failure would alert twice"
    assert all(len(c) == 1 and c[0]["type"] == "FailureAlert" for c in nightly.values() if c)
    for ds in ("transactions", "chargebacks"):
        prepare = f"ingest_{ds}.prepare_{ds}"
        assert prepare in nightly
        for task in (f"ingest_{ds}.load_{ds}", f"ingest_{ds}.check_raw_{ds}"):
            assert nightly[task][0]["prepared_from"] == prepare
    backfill = parsed["fraud_backfill"]["callbacks"]
    assert all(c and c[0]["type"] == "FailureAlert" for c in backfill.values())


@pytest.fixture()
def assets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "plugins"))
    yield importlib.import_module("mlpipeline_airflow.pipeline_assets")
    sys.modules.pop("mlpipeline_airflow.pipeline_assets", None)


def test_a_champion_event_only_when_the_champion_changed(assets):
    promoted = {"decision": "promoted", "reason": "beats", "champion_before": "3"}
    extra = assets.champion_extra("2026-02-14", {**promoted, "champion_version": "4"})
    assert extra == {
        "day": "2026-02-14",
        "model_name": "fraud_detector",
        "model_version": "4",
        "previous_version": "3",
        "decision": "promoted",
        "reason": "beats",
    }
    first = assets.champion_extra(
        "2026-02-14", {**promoted, "champion_before": None, "champion_version": "1"}
    )
    assert first["model_version"] == "1" and first["previous_version"] is None
    kept = {"decision": "kept_champion", "champion_before": "3", "champion_version": "3"}
    assert assets.champion_extra("2026-02-14", kept) is None
    assert (
        assets.champion_extra("2026-02-14", {"decision": "rejected", "champion_version": None})
        is None
    )


def test_a_scores_event_without_a_model_reads_nothing(tmp_path):
    event = {"day": "2026-01-06", "table_version": None, "no_model_yet": True}
    summary = scores_consumer.summarize(Settings.under(tmp_path), event)
    assert summary["rows"] == 0 and summary["no_model_yet"] is True
    assert (
        scores_consumer.describe(summary)
        == "scores for 2026-01-06 (current table): none, no model yet"
    )
    with pytest.raises(ValueError, match="extra\\['day'\\]"):
        scores_consumer.summarize(Settings.under(tmp_path), {"table_version": 3})
