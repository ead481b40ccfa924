"""Train one model candidate on a persisted split and register it in MLflow as `fraud_detector`.

Each candidate (conf/candidates.yaml) becomes one MLflow run with its parameters, validation
metrics, the whole scikit-learn Pipeline (request-time features included) with signature and
input example, and lineage tags; the run's model is registered as a new version carrying the
same tags. Training the same candidate configuration on the same split again reuses that run
and version instead of adding a duplicate, so retries and re-runs are cheap and idempotent.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from importlib import metadata
from typing import Any

import duckdb
import pandas as pd
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from mlpipeline.core.config import PROJECT_ROOT, Settings, pipeline_conf
from mlpipeline.core.days import parse_day
from mlpipeline.training import model_artifact, model_features, model_registry, request_features
from mlpipeline.training.candidates import ESTIMATORS, JOBLIB_ESTIMATORS, Candidate, training_jobs
from mlpipeline.training.metrics import classification_metrics
from mlpipeline.training.model_features import FeatureColumns, FeatureSpecLike, build_pipeline
from mlpipeline.training.split import Split

log = logging.getLogger(__name__)

CONFIG_HASH_TAG = "candidate_config_hash"
CANDIDATE_TAG = "candidate"
SPLIT_WARNINGS_TAG = "split_warnings"


@dataclass(frozen=True)
class CandidateResult:
    """A trained (or reused) candidate: its run, registered version and validation metrics."""

    name: str
    run_id: str
    model_version: str
    model_uri: str
    model_id: str
    split_id: str
    training_cutoff: date
    config_hash: str
    validation_metrics: dict[str, float]
    reused: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, e.g. to hand over between Airflow tasks."""
        return {**asdict(self), "training_cutoff": self.training_cutoff.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateResult:
        return cls(**{**data, "training_cutoff": parse_day(data["training_cutoff"])})


def training_skip_reason(frame: pd.DataFrame, label: str = "is_fraud") -> str | None:
    """Why training must be skipped for this training set (cold start), or None to train."""
    limits = pipeline_conf()["labels"]
    positives = int(frame[label].sum()) if len(frame) else 0
    if len(frame) < limits["min_rows"] or positives < limits["min_positives"]:
        return (
            f"{len(frame)} matured labelled rows with {positives} frauds; training needs at least "
            f"{limits['min_rows']} rows and {limits['min_positives']} frauds (labels.min_rows / "
            "min_positives in pipeline.yaml)"
        )
    return None


def batch_revisions(con: duckdb.DuckDBPyConnection, training_cutoff: date) -> dict[str, str]:
    """The current revision of every raw batch up to the cutoff: what the training set came from."""
    rows = con.execute(
        "SELECT batch_id, revision FROM meta.batches WHERE status = 'current' AND dt <= ? "
        "ORDER BY batch_id",
        [training_cutoff],
    ).fetchall()
    return dict(rows)


def git_commit() -> str:
    """The code version: GIT_COMMIT from the deployment, else the checkout's HEAD."""
    configured = Settings.from_env().git_commit
    if configured:
        return configured
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def lineage_tags(lineage: dict[str, Any], split: Split) -> tuple[dict[str, str], dict[str, Any]]:
    """Tags for the run and the version, plus the full lineage record for the run's artifact.

    `batch_revisions` may hold hundreds of batches, more than an MLflow tag takes, so the tag
    carries a digest and the count; the full mapping goes to the run's lineage.json.
    """
    lineage = {"split_id": split.split_id, **lineage}
    if "git_commit" not in lineage:
        lineage["git_commit"] = git_commit()
    required = set(model_registry.LINEAGE_TAGS)
    missing = sorted(required - set(lineage))
    if missing:
        raise ValueError(f"lineage lacks {missing}; pass all of {sorted(required)}")
    if lineage["split_id"] != split.split_id:
        raise ValueError(
            f"lineage names split {lineage['split_id']} but the rows are split {split.split_id}"
        )
    revisions = lineage["batch_revisions"]
    if isinstance(revisions, str):
        revisions_tag = revisions
    else:
        payload = json.dumps(revisions, sort_keys=True, default=str)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
        revisions_tag = f"sha256:{digest} ({len(revisions)} batch revisions, see lineage.json)"
    tags = {
        "training_cutoff": parse_day(lineage["training_cutoff"]).isoformat(),
        "split_id": split.split_id,
        "batch_revisions": revisions_tag,
        "dbt_manifest_hash": str(lineage["dbt_manifest_hash"]),
        "git_commit": str(lineage["git_commit"]),
    }
    if lineage.get(model_registry.SNAPSHOT_TAG) is not None:
        tags[model_registry.SNAPSHOT_TAG] = str(lineage[model_registry.SNAPSHOT_TAG])
    record = {**tags, "batch_revisions": revisions, "split": split.params | {"id": split.split_id}}
    return tags, record


def candidate_config_hash(candidate: Candidate, columns: FeatureColumns) -> str:
    """Identity of what would be trained: config, resolved features and the feature code itself."""
    payload = {
        "candidate": asdict(candidate),
        "columns": columns.to_dict(),
        "feature_code": hashlib.sha256(
            "".join(inspect.getsource(m) for m in (model_features, request_features)).encode()
        ).hexdigest(),
        "sklearn": metadata.version("scikit-learn"),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _estimator(candidate: Candidate, n_jobs: int) -> BaseEstimator:
    params = dict(candidate.params)
    # Forests parallelise through joblib; the others use BLAS/OpenMP threads, which the caller
    # caps with threadpool_limits.
    if candidate.estimator in JOBLIB_ESTIMATORS:
        params["n_jobs"] = n_jobs
    return ESTIMATORS[candidate.estimator](**params)


def _input_example(frame: pd.DataFrame, columns: FeatureColumns) -> pd.DataFrame:
    """A few raw rows in the serving contract's types: numbers as float (nullable), no str dtype."""
    example = frame.loc[:, list(columns.inputs)].head(5).copy()
    for column in example.columns:
        series = example[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series) or column in columns.numeric:
            example[column] = pd.to_numeric(series, errors="coerce").astype("float64")
        else:
            example[column] = series.astype(object)
    return example


def _find_existing(
    client: Any, experiment_id: str, split_id: str, config_hash: str
) -> tuple[Any, Any] | None:
    """A finished run of this candidate config on this split, with its registered version."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.split_id = '{split_id}' and tags.{CONFIG_HASH_TAG} = '{config_hash}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        versions = client.search_model_versions(
            f"name = '{model_registry.MODEL_NAME}' and run_id = '{run.info.run_id}'"
        )
        if versions:
            return run, max(versions, key=lambda v: int(v.version))
    return None


def split_warnings_tag(split: Split) -> str:
    """The split's warnings as one tag value, short enough for any MLflow tag (runs take 8,000
    characters); the full list is in the run's split_summary.json."""
    if not split.warnings:
        return "none"
    text = f"{len(split.warnings)}: " + " | ".join(split.warnings)
    return text if len(text) <= 4000 else text[:3960] + " ... (see split_summary.json)"


def train_candidate(
    split: Split,
    candidate: Candidate,
    *,
    feature_columns: Iterable[FeatureSpecLike],
    tracking_uri: str,
    experiment: str = model_registry.EXPERIMENT,
    lineage: dict[str, Any],
) -> CandidateResult:
    """Fit the candidate on split.train, log and register it (or reuse an identical earlier run).

    `feature_columns` is the online feature set (`dbt_project.online_spec().features`); the
    candidate's include/exclude narrow it. `lineage` holds training_cutoff, batch_revisions,
    dbt_manifest_hash and optionally git_commit / split_id.
    """
    for warning in split.warnings:
        log.warning("split %s (training %s): %s", split.split_id, candidate.name, warning)
    columns = model_features.select_feature_columns(
        feature_columns, include=candidate.include, exclude=candidate.exclude
    )
    tags, record = lineage_tags(lineage, split)
    config_hash = candidate_config_hash(candidate, columns)
    client = model_registry.client(tracking_uri)
    experiment_id = model_registry.ensure_experiment(client, experiment, tracking_uri)
    model_registry.ensure_registered_model(client)

    existing = _find_existing(client, experiment_id, split.split_id, config_hash)
    if existing is not None:
        run, version = existing
        log.info(
            "candidate %s on split %s was already trained: reusing run %s, version %s",
            candidate.name,
            split.split_id,
            run.info.run_id,
            version.version,
        )
        return CandidateResult(
            name=candidate.name,
            run_id=run.info.run_id,
            model_version=str(version.version),
            model_uri=f"models:/{model_registry.MODEL_NAME}/{version.version}",
            model_id=version.model_id or run.outputs.model_outputs[0].model_id,
            split_id=split.split_id,
            training_cutoff=parse_day(run.data.tags["training_cutoff"]),
            config_hash=config_hash,
            validation_metrics={
                k.removeprefix("val_"): v
                for k, v in run.data.metrics.items()
                if k.startswith("val_")
            },
            reused=True,
        )

    label = split.label
    n_jobs = training_jobs()
    pipeline = build_pipeline(_estimator(candidate, n_jobs), columns, scale=candidate.scale)
    x_train, y_train = split.train.drop(columns=[label]), split.train[label].astype(int)
    started = time.monotonic()
    log.info(
        "training %s on %d rows (%d frauds), %d features, %d cores",
        candidate.name,
        len(x_train),
        int(y_train.sum()),
        len(columns.names),
        n_jobs,
    )
    with threadpool_limits(limits=n_jobs):
        pipeline.fit(x_train, y_train)
        fit_seconds = time.monotonic() - started
        validation_proba = pipeline.predict_proba(split.validation.drop(columns=[label]))[:, 1]
        example = _input_example(split.train, columns)
        example_output = pipeline.predict_proba(example)
    metrics = classification_metrics(split.validation[label], validation_proba)
    log.info("trained %s in %.1fs; validation %s", candidate.name, fit_seconds, metrics)

    tag_values = {
        **tags,
        CANDIDATE_TAG: candidate.name,
        CONFIG_HASH_TAG: config_hash,
        SPLIT_WARNINGS_TAG: split_warnings_tag(split),
        "training_cores": str(n_jobs),
    }
    summary = split.summary()
    params = {
        "estimator": candidate.estimator,
        "scale": candidate.scale,
        **{f"model.{k}": v for k, v in candidate.params.items()},
        "features.numeric": ",".join(columns.numeric),
        "features.categorical": ",".join(columns.categorical),
        "features.request": ",".join(columns.request),
        "split.strategy": split.strategy,
        **{f"split.{part}_rows": summary[part]["rows"] for part in summary},
    }
    with model_registry.tracking(tracking_uri) as mlflow, model_artifact.shipped_code() as code:
        from mlflow.models import infer_signature

        # Here, where the tracking block quiets skops' probe of Airflow's deprecated shims.
        model_artifact.check_trusted(pipeline)

        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{candidate.name}-{tags['training_cutoff']}-{split.split_id[:8]}",
            tags=tag_values,
        ) as run:
            mlflow.log_params(params)
            mlflow.log_metric("fit_seconds", fit_seconds)
            mlflow.log_dict(record, "lineage.json")
            mlflow.log_dict(split.summary() | {"warnings": split.warnings}, "split_summary.json")
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=infer_signature(example, example_output),
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                serialization_format=model_artifact.SERIALIZATION_FORMAT,
                code_paths=code,
                pip_requirements=model_artifact.requirements(),
                skops_trusted_types=list(model_artifact.TRUSTED_TYPES),
                tags=tag_values,
            )
            mlflow.log_metrics({f"val_{k}": v for k, v in metrics.items()}, model_id=info.model_id)
            version = client.create_model_version(
                model_registry.MODEL_NAME,
                source=info.model_uri,
                run_id=run.info.run_id,
                tags=tag_values,
                model_id=info.model_id,
            )
    log.info(
        "registered %s as %s version %s (run %s)",
        candidate.name,
        model_registry.MODEL_NAME,
        version.version,
        run.info.run_id,
    )
    return CandidateResult(
        name=candidate.name,
        run_id=run.info.run_id,
        model_version=str(version.version),
        model_uri=f"models:/{model_registry.MODEL_NAME}/{version.version}",
        model_id=info.model_id,
        split_id=split.split_id,
        training_cutoff=parse_day(tags["training_cutoff"]),
        config_hash=config_hash,
        validation_metrics=metrics,
        reused=False,
    )
