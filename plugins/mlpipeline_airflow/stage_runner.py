"""Airflow glue around `mlpipeline.pipeline.nightly`: turns the library's "nothing to do"
outcomes into skips and keeps task code free of Airflow-specific branches.

The library never imports Airflow; this is the only place that knows how its exceptions map to
task states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowSkipException

from mlpipeline.pipeline.nightly import NothingToDo

T = TypeVar("T")


def run_stage(stage: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library stage; `NothingToDo` (cold start, unverified snapshot) becomes a skip."""
    try:
        return stage(*args, **kwargs)
    except NothingToDo as exc:
        raise AirflowSkipException(str(exc)) from exc


def run_id_of(context: dict[str, Any]) -> str:
    return str(context["run_id"])
