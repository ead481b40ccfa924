"""Online scoring: `mlpipeline serve` answers `POST /score` with one transaction as JSON.

    POST /score   {"transaction_id": "t1", "customer_id": "c000123", "merchant_id": "m1",
                   "merchant_category": "grocery", "amount": 42.5, "currency": "EUR",
                   "country": "NL", "channel": "pos", "event_ts": "2026-03-01T10:15:00Z"}
    -> 200 {"transaction_id", "customer_id", "score", "decision", "decision_threshold",
            "model_name", "model_version", "snapshot_cutoff", "snapshot_export_id",
            "customer_known"}
    GET /health   -> 200 when a champion and a current snapshot are available, else 503;
                     the body also carries the request log's counts
    GET /docs     the OpenAPI page (/openapi.json the schema)

Errors are JSON `{"error": ...}`: 400 for a malformed transaction (every problem listed), 404,
405, 411, 413, and 503 when there is no champion yet, no current snapshot, or Redis is
unreachable. The app is `mlpipeline.scoring.api`, the scoring `mlpipeline.scoring.scorer`;
this module runs them under uvicorn on a socket it binds itself, so that port 0 gives a free
port whose URL is known before serving starts (the tests run it in a thread).

Every answered `/score` request is logged to the object store for the nightly's replay against
the batch scores (`mlpipeline.scoring.request_log`: buffered, written in Parquet batches by a
background thread under `serving/requests/dt=<UTC day>/`, dropped and counted rather than
waited for), flushed when the server stops (SIGTERM included). MLPIPELINE_REQUEST_LOG_ENABLED=false
turns it off; the buffer and batch sizes and the flush interval are settings too.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from mlpipeline.core import objectstore
from mlpipeline.core.config import Settings
from mlpipeline.online import OnlineReader, redis_client
from mlpipeline.scoring.api import create_app
from mlpipeline.scoring.request_log import PREFIX, RequestLog
from mlpipeline.scoring.scorer import DEFAULT_MODEL_REFRESH_SECONDS, ChampionCache, Scorer

log = logging.getLogger(__name__)


class ScoringServer:
    """uvicorn serving the API on a bound socket, with `http.server`'s verbs: `serve_forever`
    blocks (in the main thread it stops gracefully on SIGINT/SIGTERM), `shutdown` stops it
    from another thread and waits, `server_close` releases the socket. Once serving stops (the
    requests in flight answered), the app flushes and closes the scorer's request log."""

    def __init__(self, address: tuple[str, int], scorer: Scorer) -> None:
        self.scorer = scorer
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(address)
        self.socket.listen(128)
        # Logging stays the process's (log_config=None); requests are not access-logged.
        config = uvicorn.Config(create_app(scorer), log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    redis_url: str | None = None,
    model_refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS,
    request_store: objectstore.ObjectStore | None = None,
) -> ScoringServer:
    """A server bound to host:port (0: a free port), reading the configured Redis and MLflow,
    logging requests (when enabled) to `request_store`, by default the configured object store."""
    settings = settings or Settings.from_env()
    reader = OnlineReader(redis_client(redis_url or settings))
    champion = ChampionCache(settings.mlflow_tracking_uri, refresh_seconds=model_refresh_seconds)
    request_log = None
    if settings.request_log_enabled:
        store = request_store or objectstore.from_settings(settings)
        request_log = RequestLog.from_settings(settings, store)
        log.info("logging requests to %s under %s/", store.url, PREFIX)
    server = ScoringServer((host, port), Scorer(reader, champion, request_log))
    report = server.scorer.health()
    (log.info if report.status == "ok" else log.warning)(
        "scoring server on %s: %s", server.url, report.model_dump(exclude_unset=True)
    )
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
