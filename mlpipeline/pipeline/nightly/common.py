"""What every stage of the nightly shares: its outcomes and its configured stores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipeline.core.config import Settings

if TYPE_CHECKING:
    import duckdb

    from mlpipeline.core.objectstore import ObjectStore
    from mlpipeline.quality import CheckOutcome


class NothingToDo(Exception):  # noqa: N818 - an outcome, not an error
    """The stage has nothing to do and says why (cold start, nothing verified to switch)."""


class RevisionRejected(ValueError):
    """A landed revision broke the landing contract; it is registered with `status`
    (quarantined: an operator may release it; discarded: it never will be)."""

    def __init__(self, message: str, *, batch_id: str, revision: str, status: str) -> None:
        super().__init__(message)
        self.batch_id, self.revision, self.status = batch_id, revision, status


def run_kind(run_type: object) -> str:
    """An Airflow run's type as text (`scheduled`, `manual`, `backfill`, ...): the DAG hands the
    run's `run_type` (an enum there) to the stages, which never import Airflow."""
    return str(getattr(run_type, "value", run_type))


def configured() -> Settings:
    """Settings read at each call: a task sees its worker's environment, not the parser's."""
    return Settings.from_env()


def object_store() -> ObjectStore:
    from mlpipeline.core.objectstore import from_settings

    return from_settings(configured())


def enforced(con: duckdb.DuckDBPyConnection, outcome: CheckOutcome, run_id: str) -> CheckOutcome:
    """Record a gate's outcome in the warehouse, then stop the run if the gate failed."""
    from mlpipeline import quality

    quality.record(con, outcome, run_id=run_id)
    if not outcome.success:
        raise quality.QualityGateFailed(outcome)
    return outcome
