"""Register a fitted scikit-learn pipeline as `champion`, the way the nightly's evaluation leaves
a promoted model (alias, decision threshold, training cutoff): for stories that score without
training."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from mlpipeline.core.config import Settings
from mlpipeline.training import model_registry


def register_champion(
    settings: Settings, model: Any, training_cutoff: date, *, trusted_types: Sequence[str] = ()
) -> str:
    uri = settings.mlflow_tracking_uri
    client = model_registry.client(uri)
    experiment = model_registry.ensure_experiment(client, model_registry.EXPERIMENT, uri)
    with model_registry.tracking(uri) as mlflow:
        with mlflow.start_run(experiment_id=experiment):
            logged = mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=["scikit-learn"],
                skops_trusted_types=list(trusted_types) or None,
            )
        version = mlflow.register_model(logged.model_uri, model_registry.MODEL_NAME).version
    name = model_registry.MODEL_NAME
    for tag, value in (("decision_threshold", "0.5"), ("training_cutoff", str(training_cutoff))):
        client.set_model_version_tag(name, version, tag, value)
    client.set_registered_model_alias(name, model_registry.CHAMPION_ALIAS, version)
    return str(version)
