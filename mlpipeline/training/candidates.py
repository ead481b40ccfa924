"""The model candidates a night trains (conf/candidates.yaml or MLPIPELINE_CANDIDATES): their
estimators and parameters, and how many cores each training takes (its share of the cores, as
many trainings running at once as MLPIPELINE_TRAINING_PARALLEL_TASKS says)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import yaml
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlpipeline.core.config import Settings, candidates_path

ESTIMATORS: dict[str, type[BaseEstimator]] = {
    "logistic_regression": LogisticRegression,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "random_forest": RandomForestClassifier,
}


JOBLIB_ESTIMATORS = {"random_forest"}


@dataclass(frozen=True)
class Candidate:
    """One model configuration to train: estimator, hyperparameters, feature selection."""

    name: str
    estimator: str
    params: dict[str, Any] = field(default_factory=dict)
    scale: bool = False
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"candidate {self.name!r}: estimator {self.estimator!r} is unknown; "
                f"use one of {sorted(ESTIMATORS)}"
            )
        accepted = inspect.signature(ESTIMATORS[self.estimator]).parameters
        unknown = sorted(set(self.params) - set(accepted))
        if unknown:
            raise ValueError(
                f"candidate {self.name!r}: {self.estimator} has no parameters {unknown}; "
                "fix conf/candidates.yaml"
            )
        if "n_jobs" in self.params:
            raise ValueError(
                f"candidate {self.name!r}: n_jobs comes from MLPIPELINE_TRAINING_PARALLEL_TASKS, "
                "not a candidate"
            )


def _conf(path: Path | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or candidates_path()).read_text())


def load_candidates(path: Path | None = None) -> list[Candidate]:
    """The candidates declared in conf/candidates.yaml (validated: unique names, known params)."""
    conf = _conf(path)
    if "resources" in conf:
        raise ValueError(
            f"{path or candidates_path()}: `resources` is no longer read here; remove it and set "
            "MLPIPELINE_TRAINING_PARALLEL_TASKS to the candidates trained at once"
        )
    entries = conf.get("candidates") or []
    candidates = []
    for entry in entries:
        entry = dict(entry)
        unknown = sorted(
            set(entry) - {"name", "estimator", "params", "scale", "include", "exclude"}
        )
        if unknown:
            raise ValueError(f"candidate {entry.get('name')!r} has unknown keys {unknown}")
        include = entry.get("include")
        candidates.append(
            Candidate(
                name=entry["name"],
                estimator=entry["estimator"],
                params=dict(entry.get("params") or {}),
                scale=bool(entry.get("scale", False)),
                include=tuple(include) if include else None,
                exclude=tuple(entry.get("exclude") or ()),
            )
        )
    names = [c.name for c in candidates]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"conf/candidates.yaml needs candidates with unique names, got {names}")
    return candidates


def training_jobs(settings: Settings | None = None) -> int:
    """Cores one training task may use: its share of the cores this process may run on, with
    `training_parallel_tasks` trainings at once.

    joblib counts the CPU affinity and a container's CPU quota (cgroups), so a worker pod limited
    to 2 CPUs on a 64-core node gives each of 2 parallel tasks 1 core, not 32.
    """
    parallel = (settings or Settings.from_env()).training_parallel_tasks
    return max(1, joblib.cpu_count() // parallel)
