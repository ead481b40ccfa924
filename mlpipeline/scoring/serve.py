"""Online scoring: `mlpipeline serve` answers `POST /score` with one transaction as JSON.

For each request the server reads the customer's vector from the current Redis snapshot (one
round trip, `mlpipeline.online`), joins it to the transaction's fields, and scores the row with
the champion's saved scikit-learn Pipeline, the same object batch scoring loads: the
request-time features (amount against the customer's mean, seconds since the last transaction,
hour, foreign country, ...) are computed inside that Pipeline, so online and batch scores of
the same transaction against the same snapshot are equal.

    POST /score   {"transaction_id": "t1", "customer_id": "c000123", "merchant_id": "m1",
                   "merchant_category": "grocery", "amount": 42.5, "currency": "EUR",
                   "country": "NL", "channel": "pos", "event_ts": "2026-03-01T10:15:00Z"}
    -> 200 {"transaction_id", "customer_id", "score", "decision", "decision_threshold",
            "model_name", "model_version", "snapshot_cutoff", "snapshot_export_id",
            "customer_known"}
    GET /health   -> 200 when a champion and a current snapshot are available, else 503

Errors are JSON `{"error": ...}`: 400 for a malformed transaction (every problem listed), 404,
405, 413, and 503 when there is no champion yet, no current snapshot, or Redis is unreachable.
The champion is re-resolved every `model_refresh_seconds`, so a promotion or a model rollback
reaches the server without a restart; each answer names the exact version that scored it.
Logs name requests by transaction id only, never by their content.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import redis

from mlpipeline.core.config import Settings
from mlpipeline.online import NoCurrentSnapshot, OnlineReader, OnlineStoreError, redis_client
from mlpipeline.training import model_registry

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
DEFAULT_MODEL_REFRESH_SECONDS = 60.0
# The landing contract's transaction fields: required ones and their JSON types.
REQUIRED_TEXT = ("customer_id", "merchant_category", "country", "channel")
OPTIONAL_TEXT = ("transaction_id", "merchant_id", "currency")


class RequestError(ValueError):
    """The request cannot be scored as sent (HTTP 400); the message lists every problem."""


class Unavailable(RuntimeError):
    """The server cannot score now (HTTP 503): no champion, no snapshot or Redis down."""


def _timestamp(value: Any) -> datetime:
    """ISO-8601 text to a naive UTC datetime (the warehouse's convention); naive means UTC."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO-8601 string")
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_transaction(body: Any) -> dict[str, Any]:
    """The transaction's fields, typed like a `features.transaction_features` row."""
    if not isinstance(body, dict):
        raise RequestError("the body must be one transaction as a JSON object")
    problems, row = [], {}
    for name in REQUIRED_TEXT + OPTIONAL_TEXT:
        value = body.get(name)
        if value is None and name in OPTIONAL_TEXT:
            row[name] = None
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{name}: expected a non-empty string, got {value!r}"[:120])
        else:
            row[name] = value
    amount = body.get("amount")
    try:
        if isinstance(amount, bool):
            raise ValueError
        row["amount"] = float(amount)
        if not math.isfinite(row["amount"]) or row["amount"] <= 0:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"amount: expected a positive number, got {amount!r}"[:120])
    try:
        row["event_ts"] = _timestamp(body.get("event_ts"))
    except ValueError as exc:
        problems.append(f"event_ts: {exc}, got {body.get('event_ts')!r}"[:120])
    if problems:
        raise RequestError("invalid transaction: " + "; ".join(problems))
    return row


@dataclass(frozen=True)
class LoadedModel:
    ref: model_registry.ChampionRef
    model: Any


class ChampionCache:
    """The champion's model, re-resolved at most every `refresh_seconds`.

    A refresh that fails (MLflow unreachable) keeps serving the loaded version and logs why; a
    new version is loaded before it replaces the old one, so requests never wait on a load
    another thread started.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS,
        resolve: Callable[[str], model_registry.ChampionRef | None] | None = None,
        load: Callable[[model_registry.ChampionRef], Any] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self._resolve = resolve or model_registry.resolve_champion
        self._load = load or model_registry.load_model
        self._loaded: LoadedModel | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self) -> LoadedModel | None:
        due = time.monotonic() - self._checked_at >= self.refresh_seconds
        if due and self._lock.acquire(blocking=self._loaded is None):
            try:
                if time.monotonic() - self._checked_at >= self.refresh_seconds:
                    self._refresh()
            finally:
                self._lock.release()
        return self._loaded

    def _refresh(self) -> None:
        try:
            ref = self._resolve(self.tracking_uri)
            current = self._loaded
            if ref is None:
                if current is not None:
                    log.warning("no champion resolves any more; keeping version %s", current.ref)
            elif current is None or current.ref.version != ref.version:
                self._loaded = LoadedModel(ref, self._load(ref))
                log.info("serving %s version %s (alias %s)", ref.name, ref.version, ref.alias)
            elif current.ref != ref:
                self._loaded = LoadedModel(ref, current.model)  # same version, new threshold
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("could not refresh the champion from %s", self.tracking_uri)
        finally:
            self._checked_at = time.monotonic()


class Scorer:
    """Transaction in, score out: the online vector from Redis, the champion's Pipeline."""

    def __init__(self, reader: OnlineReader, champion: ChampionCache) -> None:
        self.reader = reader
        self.champion = champion

    def score(self, body: Any) -> dict[str, Any]:
        transaction = parse_transaction(body)
        loaded = self.champion.get()
        if loaded is None:
            if self.champion.last_error:
                raise Unavailable(f"the champion cannot be loaded: {self.champion.last_error}")
            raise Unavailable(
                f"no model yet: no version of {model_registry.MODEL_NAME} carries the alias "
                f"{model_registry.CHAMPION_ALIAS!r}; the nightly promotes one once enough "
                "labelled history exists"
            )
        try:
            read = self.reader.read([transaction["customer_id"]])
        except NoCurrentSnapshot as exc:
            raise Unavailable(str(exc)) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(f"the online store (Redis) cannot be reached: {exc}") from exc
        frame = pd.DataFrame([{**transaction, **read.rows[0]}])
        score = float(loaded.model.predict_proba(frame)[0, 1])
        threshold = float(loaded.ref.decision_threshold)
        return {
            "transaction_id": transaction["transaction_id"],
            "customer_id": transaction["customer_id"],
            "score": score,
            "decision": score >= threshold,
            "decision_threshold": threshold,
            "model_name": loaded.ref.name,
            "model_version": str(loaded.ref.version),
            "snapshot_cutoff": read.cutoff,
            "snapshot_export_id": read.export_id,
            "customer_known": read.known[0],
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        loaded = self.champion.get()
        report: dict[str, Any] = {
            "model_version": loaded.ref.version if loaded else None,
            "model_name": model_registry.MODEL_NAME,
        }
        try:
            read = self.reader.read([])
            report.update(snapshot_cutoff=read.cutoff, snapshot_export_id=read.export_id)
        except (OnlineStoreError, redis.RedisError) as exc:
            report["snapshot_error"] = str(exc)
        ok = loaded is not None and "snapshot_error" not in report
        return ok, {"status": "ok" if ok else "unavailable", **report}


class _Handler(BaseHTTPRequestHandler):
    server: ScoringServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != "/score":
            self.close_connection = True  # the body was not read
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length <= 0:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "send the JSON body with a length"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body of {length} bytes; one transaction fits in {MAX_BODY_BYTES}"},
            )
            return
        raw = self.rfile.read(length)
        started = time.perf_counter()
        try:
            body = json.loads(raw)
            result = self.server.scorer.score(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"the body is not JSON: {exc}"})
        except RequestError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Unavailable as exc:
            log.warning("cannot score: %s", exc)
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - answer, log, keep serving
            log.exception("scoring failed")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"scoring failed: {exc}"})
        else:
            log.debug(
                "scored transaction %s in %.1f ms",
                result["transaction_id"],
                (time.perf_counter() - started) * 1000,
            )
            self._reply(HTTPStatus.OK, result)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != "/health":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})
            return
        ok, report = self.server.scorer.health()
        self._reply(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, report)

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        log.debug("%s %s", self.address_string(), format % args)


class ScoringServer(ThreadingHTTPServer):
    """A threaded HTTP server around one Scorer (one thread per connection)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], scorer: Scorer) -> None:
        super().__init__(address, _Handler)
        self.scorer = scorer

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    redis_url: str | None = None,
    model_refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS,
) -> ScoringServer:
    """A server bound to host:port (0: a free port), reading the configured Redis and MLflow."""
    settings = settings or Settings.from_env()
    reader = OnlineReader(redis_client(redis_url or settings))
    champion = ChampionCache(settings.mlflow_tracking_uri, refresh_seconds=model_refresh_seconds)
    server = ScoringServer((host, port), Scorer(reader, champion))
    ok, report = server.scorer.health()
    (log.info if ok else log.warning)("scoring server on %s: %s", server.url, report)
    return server


def serve(
    host: str, port: int, *, settings: Settings | None = None, model_refresh_seconds: float
) -> None:
    """Run the scoring server until interrupted."""
    server = make_server(host, port, settings=settings, model_refresh_seconds=model_refresh_seconds)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
