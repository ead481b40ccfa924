"""What task logs carry: the pipeline's lines, not thousands of third-party warnings."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlpipeline.training import model_registry

pytestmark = pytest.mark.unit


def _shim(name: str) -> types.ModuleType:
    """A module like Airflow's deprecated-import shims: reading any attribute warns."""
    module = types.ModuleType(name)

    def __getattr__(attribute: str) -> None:  # noqa: N807 - module protocol
        for text in ("attribute is deprecated. Please use `x`.", "is deprecated and will go."):
            warnings.warn(f"The `{name}.{attribute}` {text}", FutureWarning, stacklevel=2)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def test_saving_and_loading_a_model_leaves_no_airflow_shim_warnings_and_keeps_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(50):
        name = f"airflow.fake_shim_{index}"
        monkeypatch.setitem(sys.modules, name, _shim(name))
    model = Pipeline([("clf", LogisticRegression())]).fit(
        [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = model_registry.client(uri)
    experiment = model_registry.ensure_experiment(client, model_registry.MODEL_NAME, uri)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with model_registry.tracking(uri) as mlflow:
            with mlflow.start_run(experiment_id=experiment):
                logged = mlflow.sklearn.log_model(
                    model, name="model", pip_requirements=["scikit-learn"]
                )
            version = mlflow.register_model(logged.model_uri, model_registry.MODEL_NAME).version
            # What skops does for each function it serialises, in every loaded module.
            sys.modules["airflow.fake_shim_0"].probe  # noqa: B018
            warnings.warn("a warning of our own", UserWarning, stacklevel=1)
        loaded = model_registry.load_version(uri, version)
    assert loaded.predict([[3.0]]).tolist() == [1]
    texts = [str(w.message) for w in seen]
    assert not [t for t in texts if "is deprecated" in t]
    assert "a warning of our own" in texts
