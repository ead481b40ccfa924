"""What an alert says and where it goes: a failed task of the nightly or the backfill, a raw
batch revision quarantined by its checks, or a monitored day whose status alerts.

No Airflow here: `mlpipeline_airflow.alerts` reads the failed task's context into a
`FailedTask`, asks `quarantine_of` whether the failure is a quarantine (and
`monitoring_failure_of` whether it is a monitored day that fails the run), and sends the
`Alert` built by `build_alert` or `monitoring_alert` (or, from a task that succeeded,
`expired_pending_alert` and a monitored day's `monitoring_alert`) through Airflow's notifiers to
the destinations of `mlpipeline.core.config.AlertSettings`.
Texts name what failed, for which run and day, where the log is, and what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ERROR_CHARS = 2000


@dataclass(frozen=True)
class FailedTask:
    """One failed task instance, as its alert describes it."""

    dag_id: str
    task_id: str
    run_id: str
    error: str
    day: str | None = None
    try_number: int | None = None
    map_index: int | None = None
    log_url: str | None = None

    @property
    def label(self) -> str:
        mapped = f"[{self.map_index}]" if self.map_index is not None and self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{mapped}"


@dataclass(frozen=True)
class Quarantine:
    """A raw batch revision its checks quarantined: it never becomes current."""

    batch_id: str
    revision: str
    files: tuple[str, ...]
    rules: tuple[str, ...]
    detail: str

    def next_steps(self) -> list[str]:
        return [
            f"inspect it: `mlpipeline batches show {self.batch_id}` (rejected rows, check "
            "results, Data Docs page)",
            "if the producer sent bad data: have it fixed and land the day again; the re-run "
            "ingests the new content as a new revision",
            "if the data is right after all: "
            f"`mlpipeline batches release {self.batch_id} --revision {self.revision}` "
            "(makes it current and re-runs the days it affects, oldest first)",
            "if it must never be used: "
            f"`mlpipeline batches discard {self.batch_id} --revision {self.revision}`",
        ]


def quarantine_of(
    prepared: Mapping[str, Any] | None, error: BaseException | None
) -> Quarantine | None:
    """The quarantine a raw-batch task failed with, or None for any other failure.

    `prepared` is the revision the task worked on (`pipeline.nightly.prepare`'s result). The
    raw gate raises `QualityGateFailed` on the revision after quarantining it; `load` raises
    `RevisionRejected` after registering a revision that broke the landing contract as
    quarantined (the broken rule is on the revision).
    """
    if not prepared or error is None:
        return None
    from mlpipeline.pipeline.nightly import RevisionRejected
    from mlpipeline.quality import QualityGateFailed

    batch_id, revision = str(prepared["batch_id"]), str(prepared["revision"])
    files = tuple(str(s["key"]) for s in prepared.get("source_objects") or [])
    if isinstance(error, QualityGateFailed) and error.outcome.subject == f"{batch_id}@{revision}":
        rules = tuple(f.label for f in error.outcome.failures)
        return Quarantine(batch_id, revision, files, rules, error.outcome.describe())
    broken = prepared.get("error")
    if (
        broken
        and isinstance(error, RevisionRejected)
        and (error.batch_id, error.revision, error.status) == (batch_id, revision, "quarantined")
    ):
        return Quarantine(
            batch_id,
            revision,
            (str(broken["file"]),),
            (str(broken["rule"]),),
            str(broken["detail"]),
        )
    return None


@dataclass(frozen=True)
class Alert:
    """One message, rendered per destination: a subject, a plain text and a JSON payload."""

    kind: str  # task_failed | quarantined
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """What the webhook receives: the fields, plus the subject and text as sent elsewhere."""
        return {**self.payload, "subject": self.subject, "text": self.text}


def build_alert(task: FailedTask, quarantine: Quarantine | None = None) -> Alert:
    """The alert for a failed task, worded as a quarantine when it is one."""
    day = f" for day {task.day}" if task.day else ""
    error = task.error if len(task.error) <= _ERROR_CHARS else task.error[:_ERROR_CHARS] + " [...]"
    where = [
        f"DAG run: {task.dag_id} / {task.run_id}"
        + (f" (try {task.try_number})" if task.try_number else ""),
        f"Task log: {task.log_url}"
        if task.log_url
        else "Task log: (no Airflow API base URL known)",
    ]
    payload: dict[str, Any] = {
        "dag_id": task.dag_id,
        "task_id": task.task_id,
        "map_index": task.map_index,
        "run_id": task.run_id,
        "try_number": task.try_number,
        "day": task.day,
        "log_url": task.log_url,
        "error": error,
    }
    if quarantine is None:
        subject = f"[fraud pipeline] FAILED {task.label}{day}"
        lines = [
            f"Task {task.label} failed{day}.",
            *where,
            "",
            "Error:",
            error,
            "",
            "Next: read the task log, fix the cause, then clear the task in the Airflow UI to "
            "re-run it (the tasks after it run again too).",
        ]
        return Alert("task_failed", subject, "\n".join(lines), {"kind": "task_failed", **payload})
    q = quarantine
    subject = f"[fraud pipeline] QUARANTINED {q.batch_id} revision {q.revision}"
    lines = [
        f"Raw batch {q.batch_id} revision {q.revision} is quarantined{day}: it did not become "
        "current, and nothing downstream of it ran for the day.",
        f"File(s): {', '.join(q.files) or '(none)'}",
        f"Rule(s) broken: {'; '.join(q.rules) or '(see the detail)'}",
        f"Detected by: {task.label}",
        *where,
        "",
        "Detail:",
        q.detail,
        "",
        "Next steps:",
        *(f"- {step}" for step in q.next_steps()),
    ]
    payload.update(
        kind="quarantined",
        batch_id=q.batch_id,
        revision=q.revision,
        files=list(q.files),
        rules=list(q.rules),
        detail=q.detail,
        next_steps=q.next_steps(),
    )
    return Alert("quarantined", subject, "\n".join(lines), payload)


def expired_pending_alert(
    day: str, run_id: str, expired: list[dict[str, Any]], pending_days: int
) -> Alert:
    """Chargebacks rejected after waiting `pending_days` for their transaction: labels lost
    unless the transactions arrive and the chargebacks are delivered again."""
    batches = sorted({row["batch_id"] for row in expired})
    subject = f"[fraud pipeline] {len(expired)} chargeback(s) REJECTED: transaction never current"
    lines = [
        f"Processing day {day} (run {run_id}): {len(expired)} chargeback(s) waited {pending_days} "
        "days for their transaction to become current and are now rejected (meta.rejected_rows); "
        "their fraud labels are not used.",
        f"Batch(es): {', '.join(batches)}",
        *(
            f"- {row['batch_id']} revision {row['revision']}, file {row['file']} row {row['row']}:"
            f" transaction_id={row['transaction_id']!r}"
            for row in expired[:20]
        ),
        *(["- ..."] if len(expired) > 20 else []),
        "",
        "Next steps:",
        "- find why the transactions are missing: `mlpipeline batches list` (a quarantined or "
        "never delivered transactions day?)",
        "- once they are current, land the chargebacks day again (new content, new revision) "
        "and re-run it; the days after it become stale and re-run too",
    ]
    payload = {
        "kind": "pending_expired",
        "day": day,
        "run_id": run_id,
        "pending_days": pending_days,
        "batches": batches,
        "rows": expired,
    }
    return Alert("pending_expired", subject, "\n".join(lines), payload)


def monitoring_failure_of(error: BaseException | None) -> dict[str, Any] | None:
    """The monitored day's summary when the task failed on the day's status, else None."""
    from mlpipeline.pipeline.nightly import MonitoringFailed

    return error.result if isinstance(error, MonitoringFailed) else None


def monitoring_alert(result: Mapping[str, Any], task: FailedTask | None = None) -> Alert | None:
    """The alert for a monitored day whose status alerts (the monitor stage's result, its
    `alert` and `fails_run` set by pipeline.yaml's `monitoring.actions`), or None when it does
    not. `task` is the task that failed on it."""
    if not result["alert"]:
        return None
    status = result["status"]
    day, version = result["scored_day"], result["model_version"]
    subject = f"[fraud pipeline] MONITORING {status.upper()} for day {day} (model {version})"
    lines = [
        f"Monitoring of scored day {day} (run day {result['run_day']}), model version {version}: "
        f"{status}. Its metrics are published (monitoring.metrics)"
        + ("; the run is marked failed." if result["fails_run"] else "; the run goes on."),
        *([f"DAG run: {task.dag_id} / {task.run_id}", f"Task log: {task.log_url}"] if task else []),
    ]
    for label, checks in (
        ("Failed", result["failed_checks"]),
        ("Warning", result["warned_checks"]),
    ):
        if checks:
            lines += [f"{label} checks:", *(f"- {_check_line(c)}" for c in checks)]
    drifted = result["drifted_features"]
    lines += [
        f"Drifted inputs ({len(drifted)} of {result['features_compared']}): "
        + (", ".join(drifted) or "none"),
        "",
        "Next steps:",
        f"- see every check and input: `{result['show']}`",
        "- a changed upstream (new values, units, countries): have the producer fix it and "
        "land the day again; a real shift in behaviour: retrain (trigger the nightly with "
        "`train` true)",
        f"- re-compute the day's checks after a fix: `mlpipeline monitor run {day}`",
    ]
    if result.get("below_floors"):
        floors = ", ".join(result["below_floors"])
        lines += [
            f"- the champion (version {version}) is below its promotion floor on matured labels "
            f"({floors}): restore the previous champion with `mlpipeline model rollback "
            f'--reason "{floors} below floor on matured labels, monitoring of {day}"` '
            "(the nightly then stops promoting until `mlpipeline model release`)",
        ]
    payload = {
        "kind": "monitoring",
        **dict(result),
        "dag_id": task.dag_id if task else None,
        "task_id": task.task_id if task else None,
        "try_number": task.try_number if task else None,
        "log_url": task.log_url if task else None,
    }
    return Alert("monitoring", subject, "\n".join(lines), payload)


def _check_line(check: Mapping[str, Any]) -> str:
    value = "not computable" if check["value"] is None else f"{check['value']:.4g}"
    return f"{check['check']} {check['metric']}: {value} (warning at {check['warning_at']})"
