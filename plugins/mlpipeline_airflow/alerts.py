"""Airflow side of the alerts: the failure callback of `fraud_nightly` and `fraud_backfill`
tasks, and the Airflow notifiers (SMTP, Slack webhook, HTTP) that deliver them.

What an alert says lives in `mlpipeline.ops.alerts`; here the failed task's context becomes a
`FailedTask`, the message goes to every configured destination once, and a destination that is
down is logged, never raised: the callback must not hide the task's own failure.
"""

from __future__ import annotations

import html
import json
import logging
import os
from typing import Any

from pydantic import SecretStr

from mlpipeline.core.config import AlertSettings
from mlpipeline.ops.alerts import (
    Alert,
    FailedTask,
    build_alert,
    monitoring_alert,
    monitoring_failure_of,
    quarantine_of,
)
from mlpipeline_airflow.processing_day import processing_day

log = logging.getLogger(__name__)

# The Airflow connections a plain URL from the environment is registered as (Airflow reads
# connections from AIRFLOW_CONN_<ID> variables), so the providers' hooks can use it.
SLACK_URL_CONN_ID = "mlpipeline_alert_slack"
WEBHOOK_URL_CONN_ID = "mlpipeline_alert_webhook"
TIMEOUT_SECONDS = 10


class FailureAlert:
    """`on_failure_callback`: one alert per failed task instance to each destination.

    `prepared_from` names the task whose result is the raw revision the failing task worked on
    (the ingest group's `prepare_<dataset>`), so that a quarantine names its batch and files. A
    monitoring task that failed on its checks sends the monitoring alert instead: one alert, on
    the final try only.
    """

    def __init__(self, prepared_from: str | None = None) -> None:
        self.prepared_from = prepared_from

    def __call__(self, context: Any) -> None:
        try:
            alert = self.alert_for(context)
        except Exception:
            log.exception("could not build the alert for a failed task; no alert sent")
            return
        send(alert)

    def alert_for(self, context: Any) -> Alert:
        ti = context["ti"]
        error = context.get("exception")
        raised = error if isinstance(error, BaseException) else None
        prepared = self._prepared(ti)
        task = FailedTask(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            error=f"{type(raised).__name__}: {raised}" if raised else str(error or "(none given)"),
            day=_day(context),
            try_number=ti.try_number,
            map_index=ti.map_index,
            log_url=ti.log_url,
        )
        monitored = monitoring_failure_of(raised)
        if monitored is not None:
            return monitoring_alert(monitored, task) or build_alert(task)
        return build_alert(task, quarantine_of(prepared, raised))

    def _prepared(self, ti: Any) -> dict[str, Any] | None:
        """The revision the task worked on; None (a plain failure alert) when unreadable."""
        if not self.prepared_from:
            return None
        try:
            return ti.xcom_pull(task_ids=self.prepared_from)
        except Exception as exc:
            log.warning("cannot read %s's result for the alert: %s", self.prepared_from, exc)
            return None


def _day(context: Any) -> str | None:
    """D of a nightly run, the range of a backfill run, or None when neither is known."""
    params = context.get("params") or {}
    if params.get("start") and params.get("end"):
        return f"{params['start']} to {params['end']}"
    try:
        return processing_day(context).isoformat()
    except (ValueError, TypeError):
        return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def _url_connection(conn_id: str, fields: dict[str, Any]) -> str:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
    return conn_id


def _notifier(destination: str, alert: Alert, config: AlertSettings) -> Any:
    """The provider notifier for one destination (imported here: only a failure needs them)."""
    if destination == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=list(config.email_to),
            from_email=config.email_from,
            subject=alert.subject,
            html_content=f"<pre>{html.escape(alert.text)}</pre>",
            smtp_conn_id=config.smtp_conn_id,
        )
    if destination == "slack":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        conn_id = config.slack_conn_id or _url_connection(
            SLACK_URL_CONN_ID,
            {"conn_type": "slackwebhook", "password": _secret(config.slack_webhook_url)},
        )
        return SlackWebhookNotifier(
            slack_webhook_conn_id=conn_id, text=alert.text, timeout=TIMEOUT_SECONDS
        )
    if destination == "webhook":
        from airflow.providers.http.notifications.http import HttpNotifier

        conn_id = config.webhook_conn_id or _url_connection(
            WEBHOOK_URL_CONN_ID, {"conn_type": "http", "host": _secret(config.webhook_url)}
        )
        return HttpNotifier(
            http_conn_id=conn_id,
            json=alert.document(),
            extra_options={"timeout": TIMEOUT_SECONDS},
        )
    raise ValueError(f"unknown alert destination {destination!r}")


def send(alert: Alert, config: AlertSettings | None = None) -> dict[str, str]:
    """Deliver `alert` to each destination of `config` (by default the environment's, read
    now: a task sees its worker's); returns destination → outcome."""
    config = config or AlertSettings.from_env()
    if not config.destinations:
        log.warning(
            "no alert destination configured (set MLPIPELINE_ALERT_EMAIL_TO, "
            "MLPIPELINE_ALERT_SLACK_WEBHOOK_URL or MLPIPELINE_ALERT_WEBHOOK_URL); the alert "
            "was:\n%s\n%s",
            alert.subject,
            alert.text,
        )
        return {}
    outcomes: dict[str, str] = {}
    for destination in config.destinations:
        try:
            # The text is final: notify() directly, past the notifiers' Jinja rendering.
            _notifier(destination, alert, config).notify({})
        except Exception as exc:
            outcomes[destination] = f"failed: {exc}"
            log.error(
                "alert %r could not be sent to %s: %s: %s",
                alert.subject,
                destination,
                type(exc).__name__,
                exc,
            )
        else:
            outcomes[destination] = "sent"
            log.info("alert %r sent to %s", alert.subject, destination)
    return outcomes
