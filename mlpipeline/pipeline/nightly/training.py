"""Training stages: whether to train, the checked training set, split, candidates, promotion."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.pipeline.nightly.common import (
    NothingToDo,
    configured,
    enforced,
    object_store,
    run_kind,
)

log = logging.getLogger(__name__)


def training_wanted(train: bool | None, run_type: object) -> tuple[bool, str]:
    """Whether this run trains, and why: the `train` param when set, else every run but a
    backfill (re-running history must not retrain and re-promote on old cutoffs by accident)."""
    kind = run_kind(run_type)
    if train is not None:
        return bool(train), f"param train={str(bool(train)).lower()}"
    if kind == "backfill":
        return False, "backfill runs do not train unless the run sets param train=true"
    return True, f"{kind} run (param train not set)"


def training_parallelism() -> int:
    """Candidates trained at once: the DAG's limit on mapped `train` tasks, which the scheduler
    enforces from the parsed DAG. A setting (MLPIPELINE_TRAINING_PARALLEL_TASKS) rather than a
    key of candidates.yaml, so that parsing reads no file; each `train` task reads the same value
    to take its share of the cores."""
    return configured().training_parallel_tasks


def _due(settings: Settings, cutoff: date) -> tuple[bool, str]:
    """The training cadence and monitoring's requests (`retrain_policy`)."""
    from mlpipeline.monitoring import retrain_policy
    from mlpipeline.training import model_registry

    def champion_cutoff() -> date | None:
        champion = model_registry.resolve_champion(settings.mlflow_tracking_uri)
        return champion.training_cutoff if champion else None

    return retrain_policy.training_due(settings, cutoff, champion_cutoff)


def check_training_set(
    day: str, run_id: str, *, train: bool | None = None, run_type: object = "manual"
) -> dict[str, Any]:
    """GX gate on the training set; skipped (with the reason) when this run does not train
    (`training_wanted`) or at cold start, so that scoring goes on with whatever champion exists."""
    from mlpipeline import quality
    from mlpipeline.ingest import gates
    from mlpipeline.training.split_store import read_training_set
    from mlpipeline.training.train import training_skip_reason
    from mlpipeline.warehouse import connect

    wanted, why = training_wanted(train, run_type)
    cutoff = date.fromisoformat(day)
    settings = configured()
    if wanted and train is None:
        wanted, why = _due(settings, cutoff)
    if not wanted:
        raise NothingToDo(f"training skipped for cutoff {day}: {why}")
    log.info("training for cutoff %s: %s", day, why)
    with connect(settings) as con:
        frame = read_training_set(con, cutoff)
        reason = training_skip_reason(frame)
        if reason:
            raise NothingToDo(f"cold start, training skipped for cutoff {day}: {reason}")
        outcome = enforced(
            con,
            gates.training_set_gate(
                con,
                frame,
                cutoff,
                maturity_days=gates.label_maturity_days(settings),
                window_days=gates.training_window_days(settings),
                docs=quality.DataDocs.from_settings(settings, object_store()),
                run_name=run_id,
            ),
            run_id,
        )
    return {
        "rows": outcome.rows,
        "positives": int(frame["is_fraud"].sum()),
        "data_docs": outcome.page.key if outcome.page else None,
    }


def split(day: str, checked: dict[str, Any]) -> dict[str, Any]:
    """Split the matured labelled rows and persist the split; training reads it from there."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training import model_registry
    from mlpipeline.training.split import split_dataset
    from mlpipeline.training.split_store import persist_split, read_training_set
    from mlpipeline.training.train import batch_revisions
    from mlpipeline.warehouse import connect, lake

    cutoff = date.fromisoformat(day)
    with connect(configured(), read_only=True) as con:
        # One transaction: the rows, their revisions and the snapshot id are one snapshot's.
        snapshot, frame, revisions = lake.run_unit(
            con,
            f"read of the training set for {day}",
            lambda c: (
                lake.snapshot_id(c),
                read_training_set(c, cutoff),
                batch_revisions(c, cutoff),
            ),
        )
    conf = pipeline_conf()["split"]
    # split_dataset logs each warning; they travel on to every candidate's MLflow run.
    result = split_dataset(frame, strategy=conf["strategy"], ratios=tuple(conf["ratios"]))
    persist_split(object_store(), result)
    return {
        "split_id": result.split_id,
        "warnings": list(result.warnings),
        "rows": checked.get("rows"),
        "lineage": {
            "training_cutoff": day,
            "batch_revisions": revisions,
            "dbt_manifest_hash": dbt_project.manifest_hash(),
            model_registry.SNAPSHOT_TAG: snapshot,
        },
    }


def candidates(split_info: dict[str, Any]) -> list[dict[str, Any]]:
    """One training job per configured candidate (conf/candidates.yaml)."""
    from mlpipeline.training.candidates import load_candidates

    return [{**split_info, "candidate": c.name} for c in load_candidates()]


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one candidate on the persisted split and log it to MLflow (reused when identical)."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training.candidates import load_candidates
    from mlpipeline.training.split_store import load_split
    from mlpipeline.training.train import train_candidate

    candidate = next(c for c in load_candidates() if c.name == job["candidate"])
    result = train_candidate(
        load_split(object_store(), job["split_id"]),
        candidate,
        feature_columns=dbt_project.online_spec().features,
        tracking_uri=configured().mlflow_tracking_uri,
        lineage=job["lineage"],
    )
    return result.to_dict()


def evaluate_and_promote(
    day: str, split_info: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """Evaluate the candidates; move `champion` / `challenger` as the promotion rules say."""
    from mlpipeline.features import dbt_project
    from mlpipeline.training import promotion
    from mlpipeline.training.split_store import load_split
    from mlpipeline.training.train import CandidateResult

    outcome = promotion.evaluate_and_promote(
        [CandidateResult.from_dict(r) for r in results if r],
        load_split(object_store(), split_info["split_id"]),
        feature_columns=dbt_project.online_spec().features,
        tracking_uri=configured().mlflow_tracking_uri,
    )
    log.info("promotion for cutoff %s: %s (%s)", day, outcome.decision, outcome.reason)
    return outcome.to_dict()
