"""What a model version is compared with: its training rows, validation scores and test metrics.

The score table names the version that scored a day; its MLflow version carries the split it
was trained on (tag `split_id`, the split kept in the object store) and its run the feature
columns it reads (params `features.*`) and the validation scores evaluation kept. Its test
metrics can also be re-measured at a partial label coverage (`coverage_test_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from mlpipeline import warehouse
from mlpipeline.core import objectstore
from mlpipeline.core.config import Settings
from mlpipeline.monitoring.realized import CHARGEBACKS, COMPARED, measured
from mlpipeline.training import model_registry
from mlpipeline.training.evaluate import VALIDATION_SCORES, model_scores, validation_scores
from mlpipeline.training.model_features import FeatureColumns
from mlpipeline.training.split_store import load_split


class ReferenceUnavailable(LookupError):
    """The version's training rows cannot be found; the day is recorded as `no_reference`."""


@dataclass(frozen=True)
class VersionReference:
    version: str
    split_id: str
    columns: FeatureColumns
    decision_threshold: float | None
    training_rows: pd.DataFrame
    test_rows: pd.DataFrame  # the split's test part: its day `dt`, matured label `label`
    label: str
    test_metrics: dict[str, float]
    validation_scores: np.ndarray | None

    @property
    def inputs_text(self) -> str:
        return f"split {self.split_id[:12]} train rows of version {self.version}"

    @property
    def scores_text(self) -> str:
        if self.validation_scores is None:
            return f"version {self.version} kept no {VALIDATION_SCORES} (evaluated before)"
        return f"validation scores of version {self.version}"


def _names(params: dict[str, str], key: str) -> tuple[str, ...]:
    return tuple(name for name in params.get(key, "").split(",") if name)


@lru_cache(maxsize=2)
def load_reference(settings: Settings, version: str) -> VersionReference:
    """The training rows, feature columns, validation scores and test metrics of one registered
    version; kept for the process's next days (a registered version never changes)."""
    from mlflow.exceptions import MlflowException

    client = model_registry.client(settings.mlflow_tracking_uri)
    try:
        model_version = client.get_model_version(model_registry.MODEL_NAME, version)
    except MlflowException as exc:
        raise ReferenceUnavailable(
            f"{model_registry.MODEL_NAME} version {version} is not in the registry at "
            f"{settings.mlflow_tracking_uri}"
        ) from exc
    split_id = model_version.tags.get("split_id")
    run = client.get_run(model_version.run_id)
    params = run.data.params
    if not split_id or "features.numeric" not in params:
        raise ReferenceUnavailable(
            f"version {version} was not trained by the pipeline (no split_id tag or "
            "features.* params): its training rows are unknown"
        )
    try:
        split = load_split(objectstore.from_settings(settings), split_id)
    except FileNotFoundError as exc:
        raise ReferenceUnavailable(f"version {version}'s split is gone: {exc}") from exc
    threshold = model_version.tags.get(model_registry.THRESHOLD_TAG)
    return VersionReference(
        version=version,
        split_id=split_id,
        columns=FeatureColumns(
            numeric=_names(params, "features.numeric"),
            categorical=_names(params, "features.categorical"),
            request=_names(params, "features.request"),
        ),
        decision_threshold=float(threshold) if threshold is not None else None,
        training_rows=split.train,
        test_rows=split.test,
        label=split.label,
        test_metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        validation_scores=validation_scores(settings.mlflow_tracking_uri, model_version.run_id),
    )


def coverage_test_metrics(
    settings: Settings, reference: VersionReference, label_age_days: int
) -> dict[str, float] | None:
    """The version's test metrics (named as evaluation logs them) with each test row labelled
    only by the chargebacks reported before the end of the `label_age_days`-th day after its
    day, as a scored day that old is labelled on the run day; None when no test fraud was known
    that soon. An immature pool is graded against these: its partial labels miss the slow
    chargebacks, and so do these. The test rows carry their matured label, not when its
    chargeback came: the report times of their frauds are read from CHARGEBACKS."""
    test = reference.test_rows
    frauds = test.loc[test[reference.label] == 1, "transaction_id"].astype(str)
    with warehouse.connect(settings, read_only=True) as con:
        con.register("test_frauds", pd.DataFrame({"transaction_id": frauds}))
        reported = con.execute(
            f"SELECT transaction_id, reported_at FROM {CHARGEBACKS} "
            "JOIN test_frauds USING (transaction_id)"
        ).df()
    known_before = pd.to_datetime(test["dt"]) + pd.Timedelta(days=label_age_days + 1)
    first_report = pd.to_datetime(
        test["transaction_id"].astype(str).map(reported.set_index("transaction_id")["reported_at"])
    )
    scores = _test_scores(settings, reference.version)
    threshold = reference.decision_threshold
    rows = pd.DataFrame(
        {
            "score": scores,
            "decision": scores >= threshold if threshold is not None else False,
            "is_fraud": (first_report < known_before).to_numpy(dtype=int),  # NaT: not known
        }
    )
    if not rows["is_fraud"].any():
        return None
    values = measured(rows)
    if threshold is None:  # no decisions to measure recall and precision of
        values = {k: v for k, v in values.items() if k in ("roc_auc", "pr_auc")}
    return {COMPARED[metric]: value for metric, value in values.items()}


@lru_cache(maxsize=2)
def _test_scores(settings: Settings, version: str) -> np.ndarray:
    """The version's scores of its test rows, as evaluation computed them (its registered
    model); scored once per process and version, only when an immature pool is graded."""
    reference = load_reference(settings, version)
    model = model_registry.load_version(settings.mlflow_tracking_uri, version)
    return model_scores(model, reference.test_rows, reference.label)
