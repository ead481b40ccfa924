"""A small client of Airflow's REST API (v2): what the backfill and the release commands call.

Plain `urllib`, so the library still never imports Airflow and a release on an analyst's laptop
needs no Airflow client. Credentials are a token, or a user and password exchanged for one at
`/auth/token` (SimpleAuthManager and FAB both serve it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mlpipeline.core.config import AirflowApiSettings


class AirflowApiError(RuntimeError):
    """Airflow's API refused a call or could not be reached; the message says which call."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowApi:
    """Calls under `/api/v2`, each with the bearer token this client logged in with."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        # Public for the pages the API server serves outside /api/v2 (a plugin's, behind login).
        self.token = token

    @classmethod
    def login(
        cls, url: str, *, token: str | None, username: str | None, password: str | None
    ) -> AirflowApi:
        """A client with `token`, or with one fetched for `username` / `password`."""
        if not token:
            if not username or not password:
                raise AirflowApiError(
                    f"no credentials for the Airflow API at {url}: set AIRFLOW_API_TOKEN, or "
                    "AIRFLOW_API_USERNAME and AIRFLOW_API_PASSWORD"
                )
            token = fetch_token(url, username, password)
        return cls(url, token)

    @classmethod
    def configured(cls, settings: AirflowApiSettings | None = None) -> AirflowApi | None:
        """The client of the configured API (the environment's by default), or None when no
        URL is set."""
        settings = settings or AirflowApiSettings.from_env()
        if not settings.url:
            return None
        return cls.login(
            settings.url,
            token=settings.token.get_secret_value() if settings.token else None,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
        )

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:  # noqa: ANN401
        """`method /api/v2/<path>?<query>` with a JSON body; the decoded JSON answer."""
        params = {k: v for k, v in query.items() if v is not None}
        address = f"{self.url}/api/v2/{path}" + (
            "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        )
        return _request(method, address, body, {"Authorization": f"Bearer {self.token}"})

    @staticmethod
    def run_path(dag_id: str, run_id: str) -> str:
        """A run's path under `/api/v2` (run ids hold `:` and `+`: quoted)."""
        return f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """All of a run's task instances, page by page (the API serves at most 100 at a time)."""
        path = f"{self.run_path(dag_id, run_id)}/taskInstances"
        found: list[dict] = []
        while True:
            page = self.call("GET", path, limit=100, offset=len(found))
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found


def fetch_token(url: str, username: str, password: str) -> str:
    """A bearer token for `username` from the API server's `/auth/token`."""
    body = {"username": username, "password": password}
    return _request("POST", url.rstrip("/") + "/auth/token", body, {})["access_token"]


def _request(method: str, address: str, body: Any, headers: dict[str, str]) -> Any:  # noqa: ANN401
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        address, data, {"Content-Type": "application/json", **headers}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - configured URL
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:800]
        raise AirflowApiError(
            f"{method} {address} answered {exc.code}: {detail}", status=exc.code
        ) from exc
    except urllib.error.URLError as exc:
        raise AirflowApiError(
            f"{method} {address} failed: {exc.reason}; is the Airflow API server running and "
            "AIRFLOW_API_URL its address?"
        ) from exc
    return json.loads(payload) if payload else None
