"""Alerts reach real destinations: a local HTTP server (Slack webhook and generic webhook) and a
local SMTP server, through Airflow's notifiers as the failure callback sends them."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace

import pytest
from pydantic import SecretStr

from mlpipeline.core.config import PROJECT_ROOT, AlertSettings
from mlpipeline.core.objectstore import from_settings
from mlpipeline.ops import alerts
from mlpipeline.pipeline import nightly
from mlpipeline.quality import CheckOutcome, ExpectationOutcome, QualityGateFailed
from tests.alert_sinks import HttpSink, SmtpSink, dead_url, http_sink, smtp_sink
from tests.test_ingest import DAY, GOOD_ROWS, land

SENDER = "fraud-pipeline@example.com"
BATCH, REVISION = "transactions-2026-01-07", "0123456789ab"
LANDED = "landing/transactions/dt=2026-01-07/part-00000.csv"
RULE = "expect_table_row_count_to_be_between: reject rate within quality.raw.max_reject_rate"
ALERT_VARS = [f.validation_alias for f in AlertSettings.model_fields.values()]


@pytest.fixture()
def plugin(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The alerts module as DAGs import it (plugins/ on sys.path), with no destination set."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for var in ALERT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "plugins"))
    yield importlib.import_module("mlpipeline_airflow.alerts")
    sys.modules.pop("mlpipeline_airflow.alerts", None)


@pytest.fixture()
def sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpSink, SmtpSink, AlertSettings]]:
    """Both servers, and the settings naming them as the three destinations (the SMTP one
    through an Airflow connection, as airflow-init registers it)."""
    with http_sink() as http, smtp_sink() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", smtp.connection(SENDER))
        destinations = AlertSettings(
            smtp_conn_id="alerts_smtp",
            email_to="oncall@example.com, fraud-team@example.com",
            slack_webhook_url=f"{http.url}/slack/T000/B000/XXX",
            webhook_url=f"{http.url}/hooks/pipeline",
        )
        yield http, smtp, destinations


def _failed(task_id: str, error: str) -> alerts.FailedTask:
    return alerts.FailedTask(
        dag_id="fraud_nightly",
        task_id=task_id,
        run_id="manual__2026-01-07T00:00:00+00:00",
        error=error,
        day="2026-01-07",
        try_number=1,
        log_url="http://airflow.example.com/dags/fraud_nightly/runs/manual__x/tasks/" + task_id,
    )


def _quarantine_alert() -> alerts.Alert:
    """What the raw gate raises on a revision, turned into an alert as the callback does."""
    outcome = CheckOutcome(
        suite="raw_transactions",
        subject=f"{BATCH}@{REVISION}",
        rows=1000,
        results=[
            ExpectationOutcome(
                expectation="expect_table_row_count_to_be_between",
                check="reject rate within quality.raw.max_reject_rate",
                column=None,
                severity="critical",
                success=False,
                observed="700",
                expected="between 950 and 1000",
            )
        ],
    )
    error = QualityGateFailed(outcome)
    prepared = {
        "batch_id": BATCH,
        "revision": REVISION,
        "source_objects": [{"key": LANDED, "sha256": "0" * 64, "bytes": 1}],
        "error": None,
    }
    quarantine = alerts.quarantine_of(prepared, error)
    assert quarantine is not None
    return alerts.build_alert(
        _failed("ingest_transactions.check_raw_transactions", str(error)), quarantine
    )


@pytest.mark.integration
def test_a_quarantine_alert_names_batch_file_rule_and_next_steps_everywhere(plugin, sinks):
    http, smtp, destinations = sinks
    outcomes = plugin.send(_quarantine_alert(), destinations)

    assert outcomes == {"email": "sent", "slack": "sent", "webhook": "sent"}
    [slack] = http.json_bodies("/slack/T000/B000/XXX")
    [hook] = http.json_bodies("/hooks/pipeline")
    [mail] = smtp.messages
    body = mail.get_body().get_content()
    for text in (slack["text"], hook["text"], body):
        assert "quarantined" in text
        assert BATCH in text and REVISION in text and LANDED in text and RULE in text
        assert f"mlpipeline batches release {BATCH} --revision {REVISION}" in text
        assert f"mlpipeline batches discard {BATCH} --revision {REVISION}" in text
    assert hook["kind"] == "quarantined" and hook["batch_id"] == BATCH
    assert hook["files"] == [LANDED] and hook["rules"] == [RULE]
    assert hook["day"] == "2026-01-07" and hook["task_id"].endswith("check_raw_transactions")
    assert mail["Subject"] == f"[fraud pipeline] QUARANTINED {BATCH} revision {REVISION}"
    assert mail["From"] == SENDER
    assert set(mail["To"].split(", ")) == {"oncall@example.com", "fraud-team@example.com"}


@pytest.mark.integration
def test_a_task_failure_alert_names_task_run_day_and_log(plugin, sinks):
    http, smtp, destinations = sinks
    failed = _failed("score", "RuntimeError: cannot read features.transaction_features")
    alert = alerts.build_alert(failed, alerts.quarantine_of(None, RuntimeError("x")))
    assert plugin.send(alert, destinations) == {"email": "sent", "slack": "sent", "webhook": "sent"}

    [slack] = http.json_bodies("/slack/T000/B000/XXX")
    [hook] = http.json_bodies("/hooks/pipeline")
    [mail] = smtp.messages
    for text in (slack["text"], hook["text"], mail.get_body().get_content()):
        assert "Task fraud_nightly.score failed for day 2026-01-07" in text
        assert failed.run_id in text and failed.log_url in text
        assert "cannot read features.transaction_features" in text
        assert "quarantined" not in text
    assert hook["kind"] == "task_failed" and hook["log_url"] == failed.log_url
    assert mail["Subject"] == "[fraud pipeline] FAILED fraud_nightly.score for day 2026-01-07"


@pytest.mark.integration
def test_chargebacks_that_waited_too_long_are_alerted_with_their_rows(plugin, sinks):
    """The rows a settle rejected reach every destination, named by batch, file and row."""
    http, smtp, destinations = sinks
    expired = [
        {
            "batch_id": "chargebacks-2026-01-07",
            "revision": REVISION,
            "file": "part-00000.csv",
            "row": 3,
            "day": "2026-01-07",
            "transaction_id": "T00000042",
        }
    ]
    alert = alerts.expired_pending_alert("2026-02-06", "scheduled__x", expired, 30)
    assert plugin.send(alert, destinations) == {"email": "sent", "slack": "sent", "webhook": "sent"}
    [hook] = http.json_bodies("/hooks/pipeline")
    [mail] = smtp.messages
    for text in (hook["text"], mail.get_body().get_content()):
        assert "waited 30 days" in text and "chargebacks-2026-01-07" in text
        assert "file part-00000.csv row 3" in text and "T00000042" in text
    assert hook["kind"] == "pending_expired" and hook["rows"] == expired
    assert "1 chargeback(s) REJECTED" in mail["Subject"]


@pytest.mark.integration
def test_a_dead_destination_is_logged_and_the_others_still_get_the_alert(
    plugin, sinks, monkeypatch, caplog
):
    http, smtp, destinations = sinks
    dead_webhook = destinations.model_copy(update={"webhook_url": SecretStr(dead_url())})
    closed = SmtpSink(port=int(dead_url().split(":")[2].split("/")[0]))
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", closed.connection(SENDER))
    with caplog.at_level(logging.ERROR):
        outcomes = plugin.send(_quarantine_alert(), dead_webhook)

    assert outcomes["slack"] == "sent"
    assert outcomes["webhook"].startswith("failed:") and outcomes["email"].startswith("failed:")
    assert len(http.json_bodies("/slack/T000/B000/XXX")) == 1 and smtp.messages == []
    logged = [r.getMessage() for r in caplog.records if r.name == plugin.__name__]
    assert any("could not be sent to webhook" in m for m in logged)
    assert any("could not be sent to email" in m for m in logged)


@pytest.mark.unit
def test_without_a_destination_the_alert_is_only_logged(plugin, caplog):
    with caplog.at_level(logging.WARNING):
        assert plugin.send(_quarantine_alert()) == {}
    [record] = [r for r in caplog.records if r.name == plugin.__name__]
    assert "no alert destination configured" in record.getMessage()
    assert BATCH in record.getMessage()


@pytest.mark.unit
def test_other_failures_of_a_raw_batch_task_are_not_quarantines():
    prepared = {"batch_id": BATCH, "revision": REVISION, "source_objects": [], "error": None}
    assert alerts.quarantine_of(prepared, RuntimeError("IO Error: could not set lock")) is None
    assert alerts.quarantine_of(None, RuntimeError("boom")) is None
    other = CheckOutcome(suite="customer_snapshot", subject="cutoff=2026-01-07", rows=1)
    assert alerts.quarantine_of(prepared, QualityGateFailed(other)) is None


@pytest.mark.unit
def test_destinations_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    for var in ALERT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert AlertSettings.from_env().destinations == []
    monkeypatch.setenv("MLPIPELINE_ALERT_EMAIL_TO", " a@example.com ,b@example.com,")
    monkeypatch.setenv("MLPIPELINE_ALERT_SLACK_CONN_ID", "slack_oncall")
    monkeypatch.setenv("MLPIPELINE_ALERT_WEBHOOK_URL", " ")
    monkeypatch.setenv("MLPIPELINE_ALERT_SLACK_WEBHOOK_URL", "https://hooks.slack.com/T0/B0/s3cret")
    config = AlertSettings.from_env()
    assert config.email_to == ("a@example.com", "b@example.com")
    assert config.webhook_url is None
    assert config.destinations == ["email", "slack"]
    assert "s3cret" not in repr(config)  # a webhook URL carries its token: kept out of logs


@pytest.mark.unit
def test_a_revision_quarantined_at_load_is_recognised(settings):
    """`nightly.load` registers a miscounted revision as quarantined and raises: a quarantine."""
    land(from_settings(settings), GOOD_ROWS, declared=2)
    prepared = nightly.prepare("transactions", DAY.isoformat())
    with pytest.raises(nightly.RevisionRejected, match="quarantined") as raised:
        nightly.load(prepared, "manual__test")
    quarantine = alerts.quarantine_of(prepared, raised.value)
    assert quarantine is not None and quarantine.batch_id == f"transactions-{DAY}"
    assert quarantine.rules == ("row count matches _SUCCESS",)
    assert quarantine.files == (prepared["error"]["file"],) and quarantine.files[0]


MONITORED = {
    "run_day": "2026-02-14",
    "scored_day": "2026-02-14",
    "model_version": "7",
    "status": "failed",
    "checks": {"failed": 1, "ok": 2},
    "failed_checks": [
        {"check": "input_drift", "metric": "drift_share", "value": 0.41, "warning_at": 0.1}
    ],
    "warned_checks": [],
    "drift_share": 0.41,
    "features_compared": 27,
    "drifted_features": ["amount", "country"],
    "show": "mlpipeline monitor show 2026-02-14",
    "run_id": "scheduled__2026-02-15T00:00:00+00:00",
    "alert": True,
    "fails_run": True,
}


@pytest.mark.integration
def test_a_monitoring_failure_sends_the_monitoring_alert_in_place_of_the_task_failure(
    plugin, sinks, monkeypatch
):
    """The callback of a `monitor` task that raised on its checks: one alert, the checks'."""
    http, _, destinations = sinks
    monkeypatch.setattr(plugin.AlertSettings, "from_env", classmethod(lambda cls: destinations))
    ti = SimpleNamespace(
        dag_id="fraud_nightly",
        task_id="monitor",
        run_id=MONITORED["run_id"],
        try_number=2,
        map_index=-1,
        log_url="http://airflow.example.com/log/monitor",
    )
    context = {
        "ti": ti,
        "exception": nightly.MonitoringFailed(MONITORED),
        "params": {"day": "2026-02-14"},
    }
    plugin.FailureAlert()(context)
    [hook] = http.json_bodies("/hooks/pipeline")
    assert hook["kind"] == "monitoring" and hook["model_version"] == "7"
    assert hook["subject"] == "[fraud pipeline] MONITORING FAILED for day 2026-02-14 (model 7)"
    assert hook["failed_checks"] == MONITORED["failed_checks"]
    for text in (hook["text"], *(b["text"] for b in http.json_bodies("/slack/T000/B000/XXX"))):
        assert "input_drift drift_share: 0.41" in text and "amount, country" in text
        assert "mlpipeline monitor show 2026-02-14" in text and ti.log_url in text
    other = dict(context, exception=RuntimeError("IO Error: could not set lock"))
    assert plugin.FailureAlert().alert_for(other).kind == "task_failed"
