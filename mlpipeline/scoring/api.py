"""The scoring API as a FastAPI app: `POST /score` and `GET /health` around one Scorer.

Every error answer is `{"error": "..."}` (`ErrorBody`), whatever produced it: FastAPI's own 422
for a request its model rejects becomes a 400 whose message lists every problem of the
transaction, its 404/405 name the method and path, and a body without a length (411) or too
large for one transaction (413) is refused before it is read. The endpoints are plain `def`s:
scoring blocks on Redis and the model, so they run in the server's thread pool. Logs name
requests by transaction id only, never by their content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from mlpipeline.scoring.schemas import (
    FIELD_ERROR,
    ErrorBody,
    HealthReport,
    ScoreResult,
    Transaction,
)
from mlpipeline.scoring.scorer import Scorer, Unavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SCORE_PATH = "/score"


def _error(status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _error_responses(*statuses: HTTPStatus) -> dict[int | str, dict[str, Any]]:
    return {s.value: {"model": ErrorBody, "description": s.phrase} for s in statuses}


def _describe(errors: Sequence[Any]) -> str:
    """One message for the request's problems, in the words of the API before FastAPI."""
    for error in errors:
        if error["type"] == "json_invalid":
            return f"the body is not JSON: {error['ctx']['error']} (char {error['loc'][-1]})"
        if tuple(error["loc"]) == ("body",):
            return "the body must be one transaction as a JSON object"
    problems = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"][1:])
        got = f", got {error['input']!r}" if error["type"] == FIELD_ERROR else ""
        problems.append(f"{field}: {error['msg']}{got}"[:120])
    return "invalid transaction: " + "; ".join(problems)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _error(HTTPStatus.BAD_REQUEST, _describe(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == HTTPStatus.NOT_FOUND:
        message = f"no such endpoint: {where}"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        message = f"method not allowed: {where}"
    else:
        message = str(exc.detail)
    return _error(HTTPStatus(exc.status_code), message, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs its traceback.
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}")


class ScoreBodyGate:
    """Refuses a `POST /score` without a Content-Length (411) or over MAX_BODY_BYTES (413)
    before the body is read (closing the connection after a 413), and reads the body as JSON
    whatever its Content-Type, as the API always has (`curl -d` sends a form's type)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == SCORE_PATH:
            refusal = self._refusal(Headers(scope=scope).get("content-length"))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(header: str | None) -> JSONResponse | None:
        try:
            length = int(header or 0)
        except ValueError:
            length = -1
        if length <= 0:
            return _error(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a length")
        if length > MAX_BODY_BYTES:
            return _error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes; one transaction fits in {MAX_BODY_BYTES}",
                {"Connection": "close"},
            )
        return None


def create_app(scorer: Scorer) -> FastAPI:
    """The API answering with `scorer`; its OpenAPI page is at /docs. When the app stops (the
    server has answered the requests in flight), the scorer's request log is flushed and closed:
    in the app's lifespan, because uvicorn re-raises a SIGTERM once it has stopped, ending the
    process before any code after its `run` (`docker stop` would lose the log's buffer)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if scorer.request_log is not None:
            await asyncio.to_thread(scorer.request_log.close)

    app = FastAPI(
        title="mlpipeline scoring API",
        summary="Scores one card transaction with the champion model and the online features.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(ScoreBodyGate)

    @app.post(
        SCORE_PATH,
        response_model=ScoreResult,
        responses=_error_responses(
            HTTPStatus.BAD_REQUEST,
            HTTPStatus.LENGTH_REQUIRED,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.INTERNAL_SERVER_ERROR,
            HTTPStatus.SERVICE_UNAVAILABLE,
        ),
    )
    def score(transaction: Transaction) -> ScoreResult | JSONResponse:
        """Score one transaction: 503 while there is no champion or no current snapshot."""
        started = time.perf_counter()
        try:
            result = scorer.score(transaction)
        except Unavailable as exc:
            log.warning("cannot score: %s", exc)
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        except Exception as exc:  # noqa: BLE001 - answer, log, keep serving
            log.exception("scoring failed")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"scoring failed: {exc}")
        log.debug(
            "scored transaction %s in %.1f ms",
            result.transaction_id,
            (time.perf_counter() - started) * 1000,
        )
        return result

    @app.get(
        "/health",
        response_model=HealthReport,
        response_model_exclude_unset=True,
        responses={HTTPStatus.SERVICE_UNAVAILABLE.value: {"model": HealthReport}},
    )
    def health(response: Response) -> HealthReport:
        """200 when a champion and a current snapshot are available, else 503."""
        report = scorer.health()
        if report.status != "ok":
            response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
        return report

    return app
