"""The local MLflow store under parallel tasks: the nightly's training tasks run at once, and on
a fresh SQLite store each would create MLflow's tables."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from mlpipeline.training import model_registry

pytestmark = pytest.mark.unit


def _open(uri: str) -> str:
    client = model_registry.client(uri)
    return model_registry.ensure_experiment(client, model_registry.MODEL_NAME, uri)


def test_tasks_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        experiments = pool.map(_open, [uri] * 4)
    assert len(set(experiments)) == 1
