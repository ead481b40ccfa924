"""The nightly workflow's stages as plain calls: what each Airflow task of `fraud_nightly` runs,
and what the catch-up runs day by day outside Airflow.

Every stage takes and returns small JSON-able values (days as ISO strings, manifests, ids), so
tasks hand data to each other through the object store, the warehouse, Redis and MLflow, never
through a worker's local files. Heavy libraries are imported inside the stages so that parsing
the DAG stays fast.
"""

from mlpipeline.core.landing import DATASETS
from mlpipeline.pipeline.nightly.common import NothingToDo, RevisionRejected
from mlpipeline.pipeline.nightly.features import build_features, check_snapshot, dbt_tasks
from mlpipeline.pipeline.nightly.ingest import (
    check_raw,
    landing_ready,
    landing_wait,
    load,
    prepare,
    promote,
)
from mlpipeline.pipeline.nightly.monitoring import MonitoringFailed, monitor
from mlpipeline.pipeline.nightly.online import (
    export_snapshot,
    push_staged,
    switch_online,
    verify_staged,
)
from mlpipeline.pipeline.nightly.scoring import score
from mlpipeline.pipeline.nightly.training import (
    candidates,
    check_training_set,
    evaluate_and_promote,
    split,
    train,
    training_parallelism,
    training_wanted,
)

__all__ = [
    "DATASETS",
    "MonitoringFailed",
    "NothingToDo",
    "RevisionRejected",
    "build_features",
    "candidates",
    "check_raw",
    "check_snapshot",
    "check_training_set",
    "dbt_tasks",
    "evaluate_and_promote",
    "export_snapshot",
    "landing_ready",
    "landing_wait",
    "load",
    "monitor",
    "prepare",
    "promote",
    "push_staged",
    "score",
    "split",
    "switch_online",
    "train",
    "training_parallelism",
    "training_wanted",
    "verify_staged",
]
