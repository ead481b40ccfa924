"""
### fraud_nightly — the nightly batch ML workflow for card-payment fraud (Airflow DAG)

Runs for processing day **D** (UTC) once D has ended; a manual run or `airflow dags test` runs for
the day of its logical date, or for the `day` param when given.

1. **ingest** — wait for each dataset's `_SUCCESS`; its landed files become a revision aside, are
   checked with Great Expectations, and only then promoted to current.
2. **dbt_build** — the dbt feature project, one `dbt build` task per model (the model, then its
   tests), one per test spanning several models and per source's freshness (Cosmos):
   snapshots, point-in-time join, marts. A failing test stops the run; its log names the test
   and its first failing rows.
3. **check_snapshot** — GX gate on cutoff D's snapshot; it gates everything after it.
4. **online** — export the snapshot to the object store, push it to Redis as a staged snapshot,
   verify it.
5. **training** — GX gate on the training set, split, train candidates in parallel, evaluate and
   register `fraud_detector` (skipped at cold start, and on backfills unless `train` is true).
6. **score** — score D's transactions with the champion (also when training is skipped or fails).
7. **monitor** — after scoring: D's model inputs and scores against the training rows and
   validation scores of the version that scored it, its realized performance on the labels
   arrived so far, serving skew, and freshness (graded on scheduled runs only)
   (`monitoring.metrics`, `mlpipeline monitor show D`, the "Monitoring report" link). The day's
   status sends an alert naming the checks, or fails the task (and the run) once the metrics are
   published, as pipeline.yaml's `monitoring.actions` say. Nothing to compare
   (no model yet) passes. It never holds up `switch_online`.
8. **switch_online** — the final task: make the verified snapshot current in Redis (with the
   `push_online` param false, push, verify and switch are skipped and only the export is written).

`ready_to_score` joins the training branch and the export whatever their outcome, so a failed
training never leaves the day unscored; `watcher` (Airflow's watcher pattern: trigger rule
ONE_FAILED, downstream of every task) fails the run when any task failed, since the final tasks
run whatever happened before them; on a good night it is skipped.

**Events.** Promoting a raw batch, the snapshot export, the scores, the monitoring metrics, the
online switch and a new champion emit Airflow asset events (`fraud.raw.<dataset>`,
`fraud.snapshot_export`, `fraud.scores`, `fraud.monitoring`, `fraud.online_snapshot`,
`fraud.champion`) whose `extra` says what was published; see `example_scores_consumer`.
**Alerts.** A failed task, a raw batch quarantined by its checks, or a day's monitoring status
(`monitoring.actions`) sends one alert to each destination configured in the environment
(`MLPIPELINE_ALERT_*`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    ExecutionMode,
    InvocationMode,
    LoadMode,
    SourceRenderingBehavior,
    TestBehavior,
)
from mlpipeline_airflow.alerts import FailureAlert, send
from mlpipeline_airflow.dbt_nodes import before_dbt_node
from mlpipeline_airflow.pipeline_assets import (
    CHAMPION_CHANGES,
    MONITORING,
    ONLINE_SNAPSHOT,
    RAW_BATCHES,
    SCORES,
    SNAPSHOT_EXPORT,
    champion_extra,
    emit_champion,
    monitoring_extra,
    online_extra,
    publish,
    raw_batch_extra,
    scores_extra,
    snapshot_extra,
)
from mlpipeline_airflow.processing_day import ProcessingDayTimetable, ended_processing_day
from mlpipeline_airflow.stage_runner import run_id_of, run_stage
from mlpipeline_airflow.warehouse_access import WAREHOUSE

from mlpipeline.ops import nightly_backfill
from mlpipeline.ops.alerts import expired_pending_alert, monitoring_alert
from mlpipeline.pipeline import nightly

log = logging.getLogger(__name__)

# Retries come from Airflow's configuration (core.default_task_retries): none on a laptop, so a
# failure shows at once; production sets them in its environment. A task's final failure alerts.
default_args = {"owner": "data-platform", "on_failure_callback": FailureAlert()}


@dag(
    dag_id="fraud_nightly",
    schedule=ProcessingDayTimetable(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=__doc__,
    tags=["fraud", "nightly"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Processing day D (YYYY-MM-DD); empty: the run's logical date.",
        ),
        "train": Param(
            None,
            type=["null", "boolean"],
            description=(
                "Train and evaluate candidates. Empty: yes for scheduled and manual runs, no for "
                "backfills; true or false forces it."
            ),
        ),
        "push_online": Param(
            True,
            type="boolean",
            description="Push the snapshot to Redis and switch it in (false: export only).",
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            description=(
                "Rebuild every cutoff of the dbt features (dbt --full-refresh), after a feature "
                "was added or retyped."
            ),
        ),
    },
)
def fraud_nightly() -> None:
    @task
    def resolve_day() -> str:
        return ended_processing_day(get_current_context()).isoformat()

    day = resolve_day()

    @task_group(group_id="ingest")
    def ingest(dataset: str) -> None:
        # Waits for the producer's _SUCCESS without holding a worker slot between pokes; the
        # log of each poke names the missing object, the timeout fails the run.
        @task.sensor(task_id=f"wait_for_{dataset}", mode="reschedule", **nightly.landing_wait())
        def wait_for_landing(day: str) -> bool:
            return nightly.landing_ready(dataset, day)

        @task(task_id=f"prepare_{dataset}")
        def prepare(day: str) -> dict:
            return nightly.prepare(dataset, day)

        # A failure of these two may be a quarantine: the alert then names the revision.
        batch_alert = FailureAlert(prepared_from=f"ingest_{dataset}.prepare_{dataset}")

        @task(task_id=f"load_{dataset}", pool=WAREHOUSE, on_failure_callback=batch_alert)
        def load(prepared: dict) -> dict:
            return nightly.load(prepared, run_id_of(get_current_context()))

        @task(task_id=f"check_raw_{dataset}", pool=WAREHOUSE, on_failure_callback=batch_alert)
        def check_raw(prepared: dict) -> dict:
            return nightly.check_raw(prepared, run_id_of(get_current_context()))

        @task(task_id=f"promote_{dataset}", pool=WAREHOUSE, outlets=[RAW_BATCHES[dataset]])
        def promote(prepared: dict) -> dict:
            run_id = run_id_of(get_current_context())
            result = nightly.promote(prepared, run_id)
            if result["expired"]:
                alert = expired_pending_alert(
                    result["day"], run_id, result["expired"], result["pending_days"]
                )
                send(alert)
            return publish(RAW_BATCHES[dataset], raw_batch_extra, result)

        prepared = prepare(day)
        wait_for_landing(day) >> prepared
        load(prepared) >> check_raw(prepared) >> promote(prepared)

    ingest_groups = [ingest.override(group_id=f"ingest_{ds}")(ds) for ds in nightly.DATASETS]

    # The dbt models, their tests and the sources' freshness as tasks, rendered by Cosmos from the
    # manifest setup parsed ahead (no dbt at parse time). Each runs dbt in-process for D's vars
    # against the prod target; the callback releases the warehouse and logs failing test rows.
    dbt = nightly.dbt_tasks()
    features = DbtTaskGroup(
        group_id="dbt_build",
        project_config=ProjectConfig(
            dbt_project_path=dbt["project_dir"],
            manifest_path=dbt["manifest"],
            project_name="fraud_features",
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name="fraud_features",
            target_name="prod",
            profiles_yml_filepath=dbt["profiles_yml"],
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            should_detach_multiple_parents_tests=True,
            emit_datasets=False,
            enable_owner_inheritance=False,
        ),
        operator_args={
            "pool": WAREHOUSE,
            # dbt would create an empty file where it finds no warehouse: fail first instead; and
            # warn when the manifest is older than the dbt code (no parse-time check).
            "pre_execute": before_dbt_node,
            "vars": {"processing_day": "{{ ti.xcom_pull(task_ids='resolve_day') }}"},
            "full_refresh": "{{ params.full_refresh }}",
            "env": dbt["env"],
            "append_env": True,
            "callback": "mlpipeline.features.transform.after_dbt_node",
        },
    )

    @task(pool=WAREHOUSE)
    def check_snapshot(day: str) -> dict:
        return nightly.check_snapshot(day, run_id_of(get_current_context()))

    snapshot_ok = check_snapshot(day)
    ingest_groups >> features >> snapshot_ok

    @task_group(group_id="online")
    def online(day: str):  # noqa: ANN202 - returns the group's XComArgs
        @task(pool=WAREHOUSE, outlets=[SNAPSHOT_EXPORT])
        def export_snapshot(day: str) -> dict:
            return publish(SNAPSHOT_EXPORT, snapshot_extra, nightly.export_snapshot(day))

        @task
        def push_staged(manifest: dict) -> dict:
            enabled = bool(get_current_context()["params"]["push_online"])
            return run_stage(nightly.push_staged, manifest, enabled=enabled)

        @task
        def verify_staged(manifest: dict) -> dict:
            return nightly.verify_staged(manifest)

        manifest = export_snapshot(day)
        verified = verify_staged(manifest)
        push_staged(manifest) >> verified
        return manifest, verified

    @task_group(group_id="training")
    def training(day: str):  # noqa: ANN202 - returns the group's last XComArg
        @task(pool=WAREHOUSE)
        def check_training_set(day: str) -> dict:
            context = get_current_context()
            return run_stage(
                nightly.check_training_set,
                day,
                run_id_of(context),
                train=context["params"]["train"],
                run_type=context["dag_run"].run_type,
            )

        @task(pool=WAREHOUSE)
        def split(day: str, checked: dict) -> dict:
            return nightly.split(day, checked)

        @task
        def candidates(split_info: dict) -> list[dict]:
            return nightly.candidates(split_info)

        # Each task takes cores // parallel_tasks for its threads (mlpipeline.training.train).
        @task(max_active_tis_per_dagrun=nightly.training_parallelism())
        def train(job: dict) -> dict:
            return nightly.train(job)

        # An event for fraud.champion only when the champion changed (through the alias).
        @task(outlets=[CHAMPION_CHANGES])
        def evaluate_register(day: str, split_info: dict, results: list[dict]) -> dict:
            # One request for every result: iterating would probe one past the end, which
            # Airflow logs as an error ("XCom not found") on every successful run.
            outcome = nightly.evaluate_and_promote(day, split_info, results[:])
            emit_champion(champion_extra(day, outcome))
            return outcome

        checked = check_training_set(day)
        snapshot_ok >> checked
        split_info = split(day, checked)
        results = train.expand(job=candidates(split_info))
        return evaluate_register(day, split_info, results)

    # Scoring waits for training and the export whatever their outcome (it then uses whatever
    # champion resolves), but never runs when the snapshot gate failed.
    ready_to_score = EmptyOperator(task_id="ready_to_score", trigger_rule=TriggerRule.ALL_DONE)

    @task(pool=WAREHOUSE, outlets=[SCORES])
    def score(day: str) -> dict:
        return publish(SCORES, scores_extra, nightly.score(day, run_id_of(get_current_context())))

    # A status that alerts is sent here; one that fails the run raises, and the failure callback
    # sends that alert instead (once, after the last try).
    @task(pool=WAREHOUSE, outlets=[MONITORING])
    def monitor(day: str) -> dict:
        context = get_current_context()
        result = nightly.monitor(day, run_id_of(context), run_type=context["dag_run"].run_type)
        alert = monitoring_alert(result)
        if alert is not None:
            send(alert)
        return publish(MONITORING, monitoring_extra, result)

    # Skipped (nothing verified, or a pinned rollback): no event.
    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[ONLINE_SNAPSHOT])
    def switch_online(manifest: dict | None, verified: dict | None) -> dict:
        result = run_stage(nightly.switch_online, manifest, verified)
        return publish(ONLINE_SNAPSHOT, online_extra, result)

    # Airflow's watcher: downstream of every task, it runs only when one of them failed, and
    # fails the run, which the final tasks (ALL_DONE) would otherwise leave green; on a good
    # night it is skipped. The failed task already alerted: the watcher does not alert again.
    # In a backfill it also cancels the backfill: Airflow would start the next day regardless.
    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=None)
    def watcher() -> None:
        if get_current_context()["dag_run"].run_type == "backfill":
            log.warning(nightly_backfill.stop_after_failed_run())
        raise AirflowFailException(
            "a task of this run failed (or could not run because of a failure); see its log"
        )

    manifest, verified = online(day)
    snapshot_ok >> manifest
    trained = training(day)
    [trained, manifest] >> ready_to_score
    scored = score(day)
    [snapshot_ok, ready_to_score] >> scored
    scored >> monitor(day)
    switched = switch_online(manifest, verified)
    scored >> switched

    switched >> watcher()


fraud_nightly_dag = fraud_nightly()
for _task in fraud_nightly_dag.tasks:
    if _task.task_id != "watcher":
        _task >> fraud_nightly_dag.get_task("watcher")
