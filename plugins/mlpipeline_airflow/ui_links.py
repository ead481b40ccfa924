"""The nightly's extra links in the Airflow UI, and the HTTP route that serves what they open.

- "MLflow run" (training.train per map index, training.evaluate_register): the run's MLflow UI
  page, under `MLFLOW_UI_URL` (default: the tracking URI when it is http(s); else no link).
- "Data Docs" (the GX gates): the validation's Data Docs page, served from the object store by
  the route below, since a browser does not open file:// links from an http page.
- "Score table" (score): a page of the day's rows in the Delta score table.
- "Monitoring report" (monitor): the run day's checks and 60-day trends
  (`mlpipeline.monitoring.report`).

The links are global and computed on the API server from the task's XCom return value, so they
appear for scheduler runs and `airflow dags test` runs alike, without any DAG change; a task
whose result names nothing gets no link. The route checks the Airflow login itself (Airflow does
not authenticate plugin apps): the UI's session cookie or an API token.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink, conf

from mlpipeline.core.config import Settings
from mlpipeline.ops import reports

log = logging.getLogger(__name__)

URL_PREFIX = "/mlpipeline"


def _task_result(ti_key: Any) -> Any:  # noqa: ANN401 - Airflow's TaskInstanceKey / any value
    """The task instance's XCom return value, read from the metadata DB (API server side: the
    Task SDK's XCom reads go through a running task's supervisor, which links have none of)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.key == "return_value",
                XComModel.dag_id == ti_key.dag_id,
                XComModel.run_id == ti_key.run_id,
                XComModel.task_id == ti_key.task_id,
                XComModel.map_index == ti_key.map_index,
            )
        )
    if not isinstance(value, str | bytes):
        return value
    try:
        return json.loads(value)
    except ValueError:  # a plain string stored as is
        return value


def _route(path: str) -> str:
    """An absolute path on the API server, under its base URL's path when it has one."""
    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{URL_PREFIX}/{path}"


class MlflowRunLink(BaseOperatorLink):
    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:  # noqa: ANN401
        ui_url = Settings.from_env().mlflow_ui_url
        run_id = reports.mlflow_run_id(_task_result(ti_key)) if ui_url else None
        return reports.mlflow_run_url(ui_url, run_id) if run_id else ""


class DataDocsLink(BaseOperatorLink):
    name = "Data Docs"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:  # noqa: ANN401
        path = reports.data_docs_path(_task_result(ti_key))
        return _route(f"data-docs/{quote(path)}") if path else ""


class ScoreTableLink(BaseOperatorLink):
    name = "Score table"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:  # noqa: ANN401
        scored = reports.scored_day(_task_result(ti_key))
        if not scored:
            return ""
        day, version = scored
        return _route(f"scores/{day}" + ("" if version is None else f"?version={version}"))


class MonitoringReportLink(BaseOperatorLink):
    name = "Monitoring report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:  # noqa: ANN401
        day = reports.monitored_day(_task_result(ti_key))
        return _route(f"monitoring/{day}") if day else ""


@cache
def _app() -> Any:  # noqa: ANN401 - a FastAPI app
    """The report routes. Built on the first request, so that the scheduler, the DAG processor
    and every task (which all load this plugin) never import the API server's modules."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, Response

    from mlpipeline.core.objectstore import from_settings

    app = FastAPI(title="mlpipeline reports", dependencies=[Depends(get_user)])

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str) -> Response:
        try:
            data, media_type = reports.read_data_docs(from_settings(Settings.from_env()), path)
        except reports.ReportNotFound as exc:
            log.warning("report page not found: %s", exc)
            raise HTTPException(status_code=404, detail=exc.public) from exc
        return Response(data, media_type=media_type)

    @app.get("/scores/{day}", response_class=HTMLResponse)
    def scores(day: str, version: int | None = None) -> str:
        try:
            found = reports.day_scores(Settings.from_env(), day, version)
        except ValueError as exc:
            raise HTTPException(status_code=404, detail=f"not a day: {day!r} ({exc})") from exc
        except reports.ReportNotFound as exc:
            log.warning("report page not found: %s", exc)
            raise HTTPException(status_code=404, detail=exc.public) from exc
        return reports.render_day_scores(found)

    @app.get("/monitoring/{day}", response_class=HTMLResponse)
    def monitoring(day: str) -> str:
        from mlpipeline.core.days import parse_day
        from mlpipeline.monitoring import report

        try:
            run_day = parse_day(day)
        except ValueError as exc:
            raise HTTPException(status_code=404, detail=f"not a day: {day!r} ({exc})") from exc
        found = report.load_report(Settings.from_env(), run_day)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no monitoring rows for {run_day}")
        return report.render(found)

    return app


async def _reports_app(scope: dict, receive: Any, send: Any) -> None:  # noqa: ANN401
    await _app()(scope, receive, send)


class UiLinksPlugin(AirflowPlugin):
    name = "mlpipeline_ui"
    global_operator_extra_links = [
        MlflowRunLink(),
        DataDocsLink(),
        ScoreTableLink(),
        MonitoringReportLink(),
    ]
    fastapi_apps = [{"app": _reports_app, "url_prefix": URL_PREFIX, "name": "mlpipeline reports"}]
