"""The Airflow UI as the on-call engineer sees it, in a real headless Chromium.

One local Airflow (API server + UI, scheduler with the LocalExecutor, DAG processor; SQLite), an
MLflow tracking server and Redis, all started here. On a copy of the session's six weeks of
caught-up history (tests/history.py), the nightly is triggered through the UI's trigger form for
its day D and run by the scheduler (cron scheduling is off, so no scheduled run competes with
it). The browser then reads the DAG docs, the green grid and the extra links: "MLflow run" opens
the MLflow UI page of the run, "Data Docs" the GX validation page served by the plugin route,
"Score table" the day's scores.

Login: SimpleAuthManager with one configured user, through the login form (the plugin route is
checked against the same session). Screenshots go to artifacts/ui/ (MLPIPELINE_ARTIFACTS_DIR
overrides). Chromium: Debian's `chromium` package; missing, the test skips, except with CI=true.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpipeline import backfill, local_airflow
from mlpipeline.config import PROJECT_ROOT
from mlpipeline.generate import generate_range
from mlpipeline.localredis import free_port
from mlpipeline.objectstore import from_settings
from tests.e2e_env import pipeline_env, private_redis
from tests.history import CUSTOMERS, NIGHT, copy_history

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

DAG = "fraud_nightly"
USER = "oncall"
RUN_TIMEOUT_S = 15 * 60
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GX_GATES = [
    "ingest_transactions.check_raw_transactions",
    "ingest_chargebacks.check_raw_chargebacks",
    "check_snapshot",
    "training.check_training_set",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = (
        "Chromium is not installed: `sudo apt-get install -y chromium` (Debian/Ubuntu), or "
        "`make system-deps` as root"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the browser test must run)")
    pytest.skip(message)


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(15)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(os.environ.get("MLPIPELINE_ARTIFACTS_DIR") or PROJECT_ROOT / "artifacts")
    folder = root / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    log.warning("UI screenshots are saved in %s", folder)
    return folder


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow tracking server (SQLite backend, artifacts served by it) on a free port."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    with (folder / "server.log").open("ab") as log_file:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"mlflow server exited; see {folder / 'server.log'}"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5).close()
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, f"mlflow server not up; see {folder}"
                time.sleep(1)
        yield url
    finally:
        _kill_group(process)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: str,
    mlflow_url: str,
    chromium: str,
    e2e_history: Path,
) -> Iterator[dict[str, Any]]:
    """History caught up to D-1, then the local Airflow services, logged in as USER."""
    data_dir = copy_history(e2e_history, tmp_path_factory.mktemp("ui"))
    password = secrets.token_urlsafe(12)
    services = None
    with pipeline_env(
        data_dir,
        private_redis(redis_server, 9),
        unset=["MLFLOW_UI_URL"],
        extra={"MLFLOW_TRACKING_URI": mlflow_url},
    ) as settings:
        try:
            generate_range(from_settings(settings), NIGHT, NIGHT, customers=CUSTOMERS)
            passwords = data_dir / "passwords.json"
            passwords.write_text(json.dumps({USER: password}))
            env = local_airflow.airflow_env(
                settings,
                {
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__PARALLELISM": "4",
                    # Only the run triggered from the form: no scheduled run may take the one
                    # slot of max_active_runs.
                    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                },
            )
            local_airflow.init(env)
            env = local_airflow.services_env(env, free_port())
            services = local_airflow.start_services(env, data_dir / "logs")
            yield {
                "url": services.url,
                "env": env,
                "settings": settings,
                "password": password,
                "logs": services.log_dir,
            }
        finally:
            if services is not None:
                services.stop()


class Api:
    """The Airflow REST API with a token from SimpleAuthManager's /auth/token."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        body = json.dumps({"username": user, "password": password}).encode()
        request = urllib.request.Request(
            f"{url}/auth/token", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = json.load(response)["access_token"]

    def get(self, path: str, **params: Any) -> Any:  # noqa: ANN401 - JSON
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            f"{self.url}/api/v2/{path}{query}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def run_path(self, run_id: str) -> str:
        return f"dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"{self.run_path(run_id)}/taskInstances", limit=500)["task_instances"]

    def extra_links(self, run_id: str, task_id: str, map_index: int = -1) -> dict[str, str | None]:
        path = f"{self.run_path(run_id)}/taskInstances/{task_id}/links"
        return self.get(path, map_index=map_index)["extra_links"]

    def xcom(self, run_id: str, task_id: str, map_index: int = -1) -> Any:  # noqa: ANN401
        path = f"{self.run_path(run_id)}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.get(path, map_index=map_index, deserialize="true")["value"]


@pytest.fixture(scope="module")
def api(stack: dict[str, Any]) -> Api:
    return Api(stack["url"], USER, stack["password"])


@pytest.fixture(scope="module")
def page(stack: dict[str, Any], chromium: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A logged-in page of a fresh Chromium profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        # Everything under test is on loopback; nothing may reach out (GX pages name CDNs).
        context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{stack['url']}/dags/{DAG}")
            page.locator("input[name=username]").fill(USER)
            page.locator("input[name=password]").fill(stack["password"])
            page.locator("button[type=submit]").click()
            page.wait_for_url(f"**/dags/{DAG}")
            yield page
        finally:
            context.close()


def _settled(locator):  # noqa: ANN001, ANN202
    """The locator once its open animation has finished, so that screenshots show it whole."""
    locator.evaluate("e => Promise.all(e.getAnimations({subtree: true}).map(a => a.finished))")
    return locator


def _wait_for_run(api: Api, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = api.get(api.run_path(run_id))["state"]
        if state in {"success", "failed"}:
            return state
        assert time.monotonic() < deadline, f"run {run_id} still {state} after {RUN_TIMEOUT_S}s"
        time.sleep(5)


@pytest.fixture(scope="module")
def night(stack: dict[str, Any], api: Api, page, artifacts: Path) -> dict[str, Any]:  # noqa: ANN001
    """Through the UI: read the DAG docs, fill the trigger form with day D, submit; then wait
    (REST) for the scheduler to finish the run. Returns what the browser saw and the run id."""
    seen: dict[str, Any] = {}
    page.goto(f"{stack['url']}/dags/{DAG}")
    page.get_by_role("button", name="Dag Docs").click()
    docs = page.get_by_role("dialog")
    docs.get_by_text("nightly batch ML workflow").wait_for()
    seen["docs"] = _settled(docs).inner_text()
    page.screenshot(path=artifacts / "01_dag_docs.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.locator("#element_day").fill(NIGHT.isoformat())
    seen["form"] = _settled(form).inner_text()
    seen["form_fields"] = [
        name
        for name in ("day", "train", "push_online")
        if form.locator(f"[name=element_{name}]").count()
    ]
    page.screenshot(path=artifacts / "02_trigger_form.png", full_page=True)
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(re.compile(rf"/dags/{DAG}/runs/[^/]+$"))
    run_id = urllib.parse.unquote(page.url.rsplit("/runs/", 1)[1])
    seen["run_id"] = run_id
    seen["state"] = _wait_for_run(api, run_id)
    seen["run"] = api.get(api.run_path(run_id))
    return seen


def _details(page, stack: dict[str, Any], run_id: str, task_id: str, map_index: int = -1):  # noqa: ANN001, ANN202
    """Open a task instance's Details tab, where the UI lists its extra links."""
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    run = urllib.parse.quote(run_id, safe="")
    page.goto(f"{stack['url']}/dags/{DAG}/runs/{run}/tasks/{task_id}{mapped}/details")
    page.get_by_text("Extra Links").wait_for()
    return page


def _link(page, name: str):  # noqa: ANN001, ANN202
    link = page.get_by_role("link", name=name, exact=True)
    link.wait_for()
    return link


def test_dag_page_shows_the_dag_docs(night):
    assert "fraud_nightly — the nightly batch ML workflow for card-payment fraud" in night["docs"]
    assert "switch_online" in night["docs"] and "ready_to_score" in night["docs"]


def test_trigger_form_offers_the_params(night):
    assert night["form_fields"] == ["day", "train", "push_online"]
    for text in (
        "Processing day D (YYYY-MM-DD)",
        "Train and evaluate candidates",
        "Push the snapshot",
    ):
        assert text in night["form"]
    assert night["run"]["run_type"] == "manual"
    assert night["run"]["conf"]["day"] == NIGHT.isoformat()


def test_triggered_run_is_green_in_the_grid_and_the_api(night, api, page, stack, artifacts):
    run_id = night["run_id"]
    assert night["state"] == "success", f"run ended {night['state']}; logs in {stack['logs']}"
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in api.task_instances(run_id)}
    # Every task succeeded, the watcher (which fails the run when anything failed) included.
    assert set(states.values()) == {"success"}, states
    assert ("watcher", -1) in states
    assert sum(1 for task, _ in states if task == "training.train") >= 2

    # The grid as it opens: one row per top-level task or task group (a group's badge sums up its
    # tasks).
    page.goto(f"{stack['url']}/dags/{DAG}/runs/{urllib.parse.quote(run_id, safe='')}")
    page.locator(f'a[id="grid-{run_id}-score"]').wait_for()
    # Badges of one state look alike (colour and icon): compare each to the success of `score`.
    badges = {
        cell.get_attribute("id").removeprefix(f"grid-{run_id}-"): cell.inner_html()
        for cell in page.locator(f'a[id^="grid-{run_id}-"]').all()
    }
    success = badges["score"]
    assert {task for task, badge in badges.items() if badge != success} == set(), badges
    assert "watcher" in badges
    assert {"ingest_transactions", "dbt_build", "online", "training", "switch_online"} <= set(
        badges
    )
    page.screenshot(path=artifacts / "03_green_grid.png")


def test_mlflow_run_links_open_each_run_in_the_mlflow_ui(night, api, page, stack, artifacts):
    run_id = night["run_id"]
    trained = [
        ti["map_index"] for ti in api.task_instances(run_id) if ti["task_id"] == "training.train"
    ]
    expected = {
        ("training.train", i): api.xcom(run_id, "training.train", i)["run_id"] for i in trained
    }
    outcome = api.xcom(run_id, "training.evaluate_register")
    expected[("training.evaluate_register", -1)] = next(
        e["run_id"] for e in outcome["evaluations"] if e["version"] == outcome["best_version"]
    )
    assert len(set(expected.values())) == len(trained)  # each map index its own run
    for (task_id, map_index), mlflow_run in expected.items():
        href = _link(_details(page, stack, run_id, task_id, map_index), "MLflow run").get_attribute(
            "href"
        )
        assert href and href.startswith(stack["env"]["MLFLOW_TRACKING_URI"]) and mlflow_run in href
    # Follow the last one, as a person would: it opens MLflow in a new tab.
    with page.context.expect_page() as opened:
        _link(_details(page, stack, run_id, "training.train", trained[-1]), "MLflow run").click()
    mlflow_page = opened.value
    mlflow_run = expected[("training.train", trained[-1])]
    mlflow_page.wait_for_url(re.compile(rf"#/experiments/\d+/runs/{mlflow_run}"))
    mlflow_page.get_by_text(mlflow_run).first.wait_for()
    mlflow_page.screenshot(path=artifacts / "04_mlflow_run.png")
    mlflow_page.close()


def _task_log(api: Api, run_id: str, task_id: str, map_index: int = -1) -> str:
    path = f"{api.run_path(run_id)}/taskInstances/{task_id}/logs/1"
    content = api.get(path, map_index=map_index, full_content="true")["content"]
    return "\n".join(
        str(entry.get("event", "")) if isinstance(entry, dict) else str(entry) for entry in content
    )


def test_task_logs_carry_the_stages_own_lines_not_library_noise(night, api):
    run_id = night["run_id"]
    prepared = _task_log(api, run_id, "ingest_transactions.prepare_transactions")
    assert "rows written aside to raw/transactions/" in prepared
    trained = _task_log(api, run_id, "training.train", 0)
    # skops' probe of Airflow's deprecated-module shims wrote ~1,200 such lines per model task;
    # the provider's own deprecation warning at DAG parse (one line) is a real one and stays.
    deprecations = [line for line in trained.splitlines() if "is deprecated" in line]
    assert len(deprecations) <= 2, deprecations[:5]
    evaluated = _task_log(api, run_id, "training.evaluate_register")
    assert "evaluated logistic_regression v" in evaluated
    assert "XCom not found" not in evaluated


def test_data_docs_links_open_the_gx_pages_over_http(night, api, page, stack, artifacts):
    run_id = night["run_id"]
    suites = {
        "ingest_transactions.check_raw_transactions": "raw_transactions",
        "ingest_chargebacks.check_raw_chargebacks": "raw_chargebacks",
        "check_snapshot": "customer_snapshot",
        "training.check_training_set": "training_set",
    }
    assert set(suites) == set(GX_GATES)
    for task_id, suite in suites.items():
        link = _link(_details(page, stack, run_id, task_id), "Data Docs")
        href = link.get_attribute("href")
        assert (
            href.startswith("/mlpipeline/data-docs/validations/")
            and link.get_attribute("target") == "_self"
        )
        with page.expect_response(lambda r: "/mlpipeline/data-docs/" in r.url) as response:
            link.click()
        assert response.value.status == 200
        page.wait_for_load_state("domcontentloaded")
        assert "Great Expectations" in page.title()
        body = page.locator("body").inner_text()
        assert suite in body and "Validation" in body, body[:500]
        # Styles and scripts come from the project's site, not from CDNs (offline-safe).
        sheets = page.evaluate(
            "() => [...document.styleSheets].map(s => [s.href, s.cssRules.length])"
        )
        site = f"{stack['url']}/mlpipeline/data-docs/"
        assert sheets and all(href is None or href.startswith(site) for href, _ in sheets), sheets
        assert any("bootstrap.min.css" in (href or "") and rules for href, rules in sheets)
        scripts = page.evaluate("() => [...document.scripts].map(s => s.src).filter(Boolean)")
        assert scripts and all(src.startswith(site) for src in scripts), scripts
        if task_id == "check_snapshot":
            page.screenshot(path=artifacts / "05_data_docs.png")
    # The route is behind the Airflow login, and reads nothing outside the Data Docs site.
    anonymous = urllib.request.Request(stack["url"] + href)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=30)
    assert refused.value.code == 401
    for escape in ("..%2F..%2Fscores%2F_delta_log", "static/..%2F..%2F..%2Fraw"):
        request = urllib.request.Request(
            f"{stack['url']}/mlpipeline/data-docs/{escape}",
            headers={"Authorization": f"Bearer {api.token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(request, timeout=30)
        assert missing.value.code == 404


def test_score_table_link_shows_the_days_scores(night, api, page, stack, artifacts):
    run_id = night["run_id"]
    scored = api.xcom(run_id, "score")
    _link(_details(page, stack, run_id, "score"), "Score table").click()
    page.get_by_role("heading", name=f"Scores of {NIGHT.isoformat()}").wait_for()
    facts = dict(
        row.inner_text().split("\t", 1) for row in page.locator("table").first.locator("tr").all()
    )
    assert facts["Rows scored"] == str(scored["rows_scored"]) != "0"
    assert facts["Delta version"] == str(scored["table_version"])
    assert facts["Model"] == f"{scored['model_name']} v{scored['model_version']}"
    page.screenshot(path=artifacts / "06_score_table.png")
    assert api.extra_links(run_id, "resolve_day") == {
        "Data Docs": None,
        "MLflow run": None,
        "Score table": None,
    }


def test_a_released_batch_starts_its_backfill_through_the_rest_api(night, api, stack, monkeypatch):
    """What `mlpipeline batches release` does with AIRFLOW_API_URL set (as in docker-compose):
    log in with the configured user, create one fraud_backfill run over the stale days."""
    monkeypatch.setenv("AIRFLOW_API_URL", stack["url"])
    monkeypatch.setenv("AIRFLOW_API_USERNAME", USER)
    monkeypatch.setenv("AIRFLOW_API_PASSWORD", stack["password"])
    monkeypatch.delenv("AIRFLOW_API_TOKEN", raising=False)
    days = [NIGHT - timedelta(days=2), NIGHT - timedelta(days=1)]

    (line,) = backfill.start_rerun(days)

    runs = api.get(f"dags/{backfill.BACKFILL}/dagRuns")["dag_runs"]
    (run,) = [r for r in runs if r["dag_run_id"] in line]
    assert run["conf"] == {
        "start": days[0].isoformat(),
        "end": days[1].isoformat(),
        "retrain": False,
        "push_online": True,
    }
    assert run["run_type"] == "manual"

    monkeypatch.setenv("AIRFLOW_API_PASSWORD", "wrong")
    with pytest.raises(RuntimeError, match="refused"):
        backfill.start_rerun(days)
