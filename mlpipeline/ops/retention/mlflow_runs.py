"""MLflow runs of the `fraud_detector` experiment.

Deleted (MLflow's soft delete: `mlflow gc` removes them for good, with their artifacts) once
started longer ago than the age, unless a run backs a protected model version or is the newest
run of its candidate. Protected versions: those an alias names (`champion`, `challenger`), the
pinned champion and the version it was rolled back from, and the earlier champions a model
rollback can restore. Registered model versions themselves are never deleted here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from mlpipeline.ops.retention.report import Report, deletions, utc
from mlpipeline.training import champion_alias, model_registry
from mlpipeline.training.train import CANDIDATE_TAG

log = logging.getLogger(__name__)


def protected_versions(tracking_uri: str) -> dict[str, tuple[str, Any]]:
    """Version -> (why it is protected, its ModelVersion), for the registered model."""
    from mlflow.exceptions import MlflowException

    name = model_registry.MODEL_NAME
    mlflow_client = model_registry.client(tracking_uri)
    try:
        aliases = mlflow_client.get_registered_model(name).aliases
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    reasons = dict.fromkeys(
        champion_alias.champion_history(tracking_uri, name), "earlier champion (rollback target)"
    )
    pin = champion_alias.champion_pin(tracking_uri, name)
    if pin is not None:
        reasons[pin.rolled_back_from] = "rolled back from (recorded by the pin)"
        reasons[pin.version] = "pinned champion"
    for alias, version in aliases.items():
        reasons[str(version)] = f"alias {alias}"
    found = {}
    for version, reason in reasons.items():
        try:
            found[version] = (reason, mlflow_client.get_model_version(name, version))
        except MlflowException:
            log.warning("%s version %s (%s) is no longer registered", name, version, reason)
    return found


def active_runs(mlflow_client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    """Every active run of the experiment matching the filter, newest first (all pages)."""
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = mlflow_client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _started(run: Any) -> datetime:
    return datetime.fromtimestamp((run.info.start_time or 0) / 1000, UTC)


def clean_mlflow_runs(
    tracking_uri: str, *, now: datetime, max_age: timedelta, dry_run: bool
) -> Report:
    """Delete old runs that back no protected model version and are not a candidate's newest."""
    report = Report("mlflow_runs", utc(now), max_age, dry_run)
    mlflow_client = model_registry.client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(model_registry.EXPERIMENT)
    if experiment is None:
        return report
    backing = {
        version.run_id: f"backs {model_registry.MODEL_NAME} version {number}: {reason}"
        for number, (reason, version) in protected_versions(tracking_uri).items()
    }
    runs = active_runs(mlflow_client, experiment.experiment_id)
    newest: dict[str, str] = {}
    for run in sorted(runs, key=_started):
        candidate = run.data.tags.get(CANDIDATE_TAG)
        if candidate:
            newest[candidate] = run.info.run_id
    newest_runs = {run_id: candidate for candidate, run_id in newest.items()}
    doomed = []
    for run in runs:
        run_id = run.info.run_id
        if run_id in backing:
            report.keep(run_id, backing[run_id])
        elif run_id in newest_runs:
            report.keep(run_id, "newest run of its candidate")
        elif _started(run) >= report.older_than:
            report.keep(run_id, "started within the age")
        else:
            doomed.append(run)
    progress = deletions(report, len(doomed))
    for run in doomed:
        report.delete(
            run.info.run_id,
            run_name=run.info.run_name,
            candidate=run.data.tags.get(CANDIDATE_TAG),
            started=_started(run).isoformat(),
        )
        if not dry_run:
            mlflow_client.delete_run(run.info.run_id)
            progress.add()
    if report.deleted and not dry_run:
        log.info(
            "retention mlflow_runs: %d runs deleted (soft); `mlflow gc --backend-store-uri "
            "<tracking URI>` removes them and their artifacts for good",
            len(report.deleted),
        )
    return report
