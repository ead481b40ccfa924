"""`batches release` starting its re-run through Airflow's REST API, with the credentials of
`AirflowApiSettings` (a fake API server: the browser test drives a real one)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import SecretStr

from mlpipeline.core.config import AirflowApiSettings
from mlpipeline.ops import backfill
from tests.alert_sinks import http_sink

pytestmark = pytest.mark.unit

DAYS = [date(2026, 3, 2), date(2026, 3, 1)]
RUNS = f"/api/v2/dags/{backfill.BACKFILL}/dagRuns"


def _api(url: str | None, **credentials: str) -> AirflowApiSettings:
    """Settings as code builds them, nothing read from the environment."""
    fields = {"token": None, "username": None, "password": None}
    fields.update({k: SecretStr(v) if k != "username" else v for k, v in credentials.items()})
    return AirflowApiSettings.model_construct(url=url, **fields)


def test_a_rerun_logs_in_with_the_configured_user_and_triggers_one_backfill():
    answers = {"/auth/token": {"access_token": "t0ken"}, RUNS: {"dag_run_id": "manual__1"}}
    with http_sink(answers) as server:
        (line,) = backfill.start_rerun(DAYS, _api(server.url + "/", username="ops", password="pw"))
    login, trigger = server.requests
    assert login["path"] == "/auth/token"
    assert json.loads(login["body"]) == {"username": "ops", "password": "pw"}
    assert trigger["path"] == RUNS and trigger["authorization"] == "Bearer t0ken"
    assert json.loads(trigger["body"])["conf"] == {
        "start": "2026-03-01",
        "end": "2026-03-02",
        "retrain": False,
        "push_online": True,
    }
    assert line == f"triggered {backfill.BACKFILL} run manual__1 for 2026-03-01..2026-03-02"


def test_a_token_skips_the_login():
    with http_sink({RUNS: {"dag_run_id": "manual__2"}}) as server:
        backfill.start_rerun(DAYS, _api(server.url, token="t0ken"))
    (trigger,) = server.requests
    assert trigger["authorization"] == "Bearer t0ken"


def test_without_a_url_the_commands_are_printed_and_without_credentials_it_says_what_to_set():
    lines = backfill.start_rerun(DAYS, _api(None))
    assert lines[0].startswith("AIRFLOW_API_URL is not set")
    assert lines[1:] == backfill.rerun_commands(DAYS)
    with pytest.raises(RuntimeError, match="set AIRFLOW_API_TOKEN, or AIRFLOW_API_USERNAME"):
        backfill.start_rerun(DAYS, _api("http://127.0.0.1:9"))
