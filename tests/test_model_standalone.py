"""A logged model stands alone: its feature code needs nothing from this repository, skops trusts
only our explicit list of types, and `mlflow.pyfunc.load_model` works in a fresh environment made
from the model's own requirements.txt, with the same predictions as the model in this process."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlpipeline.training import model_artifact, model_registry, request_features
from mlpipeline.training.candidates import ESTIMATORS, Candidate
from mlpipeline.training.model_features import FeatureColumns, build_pipeline
from mlpipeline.training.model_features import select_feature_columns as select
from mlpipeline.training.split import split_dataset
from mlpipeline.training.train import train_candidate
from tests.test_train_evaluate import LINEAGE, SPEC, synthetic_training_set

UV = Path(sys.executable).parent / "uv"
# Installing the model's requirements (from uv's cache) and loading it in a fresh environment.
FRESH_ENV_SECONDS = 300
STANDALONE_IMPORTS = {"numpy", "pandas", "sklearn"}
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 300},
    "hist_gradient_boosting": {"max_iter": 5},
    "random_forest": {"n_estimators": 3, "max_depth": 4},
}


def _fitted(estimator: Any, columns: FeatureColumns, *, rows: int = 1500) -> Pipeline:
    frame = synthetic_training_set(rows)
    return build_pipeline(estimator, columns, scale=True).fit(frame, frame.pop("is_fraud"))


@pytest.mark.unit
def test_the_feature_module_imports_only_the_standard_library_numpy_pandas_and_sklearn() -> None:
    tree = ast.parse(Path(request_features.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    foreign = imported - STANDALONE_IMPORTS - set(sys.stdlib_module_names)
    assert "pandas" in imported
    assert not foreign, f"request_features must stand alone but imports {sorted(foreign)}"


@pytest.mark.unit
def test_the_trusted_types_are_exactly_those_of_every_estimators_pipeline() -> None:
    columns = select(SPEC)
    found: set[str] = set()
    for name, estimator in ESTIMATORS.items():
        pipeline = _fitted(estimator(**SMALL_PARAMS[name]), columns)
        types = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
        assert types <= set(model_artifact.TRUSTED_TYPES), f"{name}: {sorted(types)}"
        model_artifact.check_trusted(pipeline)
        found |= types
    assert found == set(model_artifact.TRUSTED_TYPES), "TRUSTED_TYPES names a type no model has"


def _save(model: Any, path: Path, fmt: str, trusted: list[str] | None = None) -> Path:
    # Given requirements: MLflow would otherwise infer them in a subprocess (slow).
    model_registry.mlflow_module().sklearn.save_model(
        model,
        path,
        serialization_format=fmt,
        skops_trusted_types=trusted,
        pip_requirements=["scikit-learn"],
    )
    return path


@pytest.mark.unit
def test_a_model_asking_to_trust_another_type_is_refused(tmp_path: Path) -> None:
    """A crafted model whose MLmodel trusts `builtins.eval`: our loader does not ask the model."""
    honest = _fitted(LogisticRegression(max_iter=300), select(SPEC, include=("amount",)))
    crafted = Pipeline([("sneak", FunctionTransformer(eval)), *honest.steps])
    with pytest.raises(model_artifact.UntrustedModelError, match=r"\['builtins.eval'\] that"):
        model_artifact.check_trusted(crafted)
    asks = [*model_artifact.TRUSTED_TYPES, "builtins.eval"]
    with pytest.raises(model_artifact.UntrustedModelError, match=r"\['builtins.eval'\] outside"):
        model_artifact.load_pipeline(_save(crafted, tmp_path / "crafted", "skops", asks), what="x")
    with pytest.raises(model_artifact.UntrustedModelError, match="stored as pickle"):
        model_artifact.load_pipeline(_save(honest, tmp_path / "pickled", "pickle"), what="x")

    trusted = list(model_artifact.TRUSTED_TYPES)
    loaded = model_artifact.load_pipeline(
        _save(honest, tmp_path / "honest", "skops", trusted), what="honest"
    )
    rows = synthetic_training_set(50, seed=1)
    np.testing.assert_array_equal(loaded.predict_proba(rows), honest.predict_proba(rows))


# Runs inside the fresh environment: proves the repository is not importable there, loads the
# model the way any consumer would, and reports what it predicted and where the code came from.
FRESH_SCRIPT = """
import importlib.util, json, sys
if importlib.util.find_spec("mlpipeline") is not None:
    sys.exit("mlpipeline is importable before the model is loaded: the test would prove nothing")
import mlflow.pyfunc, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
proba = np.asarray(model.predict(pd.read_parquet(sys.argv[2])))[:, 1]
package = sys.modules["mlpipeline"]
print(json.dumps({
    "proba": proba.tolist(),
    "feature_module": sys.modules["mlpipeline.training.request_features"].__file__,
    "package_file": getattr(package, "__file__", None),
}))
"""


def _rows(frame: pd.DataFrame, columns: FeatureColumns) -> pd.DataFrame:
    """Raw rows in the serving contract's types (as the signature was inferred from)."""
    rows = frame.loc[:, list(columns.inputs)].copy()
    for column in rows.columns:
        if column in ("event_ts", "last_txn_ts"):
            continue
        if pd.api.types.is_numeric_dtype(rows[column]) or column in columns.numeric:
            rows[column] = pd.to_numeric(rows[column], errors="coerce").astype("float64")
        else:
            rows[column] = rows[column].astype(object)
    return rows


def _run(step: str, command: list[str], deadline: float, **kwargs: Any) -> str:
    """Run one step of the fresh environment within the remaining time; fail saying which."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        pytest.fail(f"the fresh environment exceeded {FRESH_ENV_SECONDS} s before: {step}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=remaining, **kwargs)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{step} did not finish within the {FRESH_ENV_SECONDS} s budget")
    if done.returncode != 0:
        pytest.fail(f"{step} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


@pytest.mark.integration
def test_the_model_loads_and_predicts_in_a_fresh_environment_from_its_own_requirements(
    tmp_path: Path,
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    split = split_dataset(synthetic_training_set())
    candidate = Candidate("standalone", "logistic_regression", {"max_iter": 500}, scale=True)
    result = train_candidate(
        split, candidate, feature_columns=SPEC, tracking_uri=tracking_uri, lineage=LINEAGE
    )
    with model_registry.tracking(tracking_uri) as mlflow:
        model_dir = Path(
            mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "dl"))
        )
    shipped = model_dir / "code" / "mlpipeline" / "training" / "request_features.py"
    assert shipped.read_text() == Path(request_features.__file__).read_text()
    assert not list((model_dir / "code").rglob("__init__.py")), "would shadow the real package"
    pins = (model_dir / "requirements.txt").read_text().split()
    assert all("==" in pin for pin in pins), pins
    names = {pin.split("==")[0] for pin in pins}
    assert set(model_artifact.LOADER_DISTRIBUTIONS) <= names

    columns = select(SPEC)
    rows = _rows(split.test.head(40), columns)
    rows.to_parquet(tmp_path / "rows.parquet")
    model = model_registry.load_version(tracking_uri, result.model_version)
    expected = model.predict_proba(rows)[:, 1]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    fresh = tmp_path / "fresh-env"
    python = fresh / "bin" / "python"
    deadline = time.monotonic() + FRESH_ENV_SECONDS
    _run("uv venv", [str(UV), "venv", "--python", sys.executable, str(fresh)], deadline, env=env)
    _run(
        "installing the model's requirements.txt",
        [
            str(UV),
            "pip",
            "install",
            "--python",
            str(python),
            "-r",
            str(model_dir / "requirements.txt"),
        ],
        deadline,
        env=env,
    )
    out = _run(
        "loading and predicting in the fresh environment",
        [str(python), "-c", FRESH_SCRIPT, str(model_dir), str(tmp_path / "rows.parquet")],
        deadline,
        env=env,
        cwd=tmp_path,
    )
    report = json.loads(out.strip().splitlines()[-1])

    assert Path(report["feature_module"]).resolve() == shipped.resolve()
    assert report["package_file"] is None  # a namespace package made of the shipped file only
    np.testing.assert_allclose(report["proba"], expected, rtol=1e-9)
    assert np.ptp(expected) > 0  # the rows differ, so equal predictions say something
