"""Real alert destinations for the tests: an HTTP server (Slack webhook, generic webhook) and an
SMTP server (aiosmtpd), both on free loopback ports, keeping what they receive."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlpipeline.devtools import localredis


@dataclass
class HttpSink:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def json_bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["path"] == path]


@contextmanager
def http_sink(answers: dict[str, Any] | None = None) -> Iterator[HttpSink]:
    """Answers every POST with 200 `ok` (what Slack answers), or with the JSON `answers` gives
    for its path (an API), and records path, body and Authorization header."""
    sink = HttpSink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            sink.requests.append(
                {"path": self.path, "body": body, "authorization": self.headers["Authorization"]}
            )
            answer = (answers or {}).get(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain" if answer is None else "application/json")
            self.end_headers()
            self.wfile.write(b"ok" if answer is None else json.dumps(answer).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    def connection(self, sender: str) -> str:
        """The Airflow connection (JSON, for AIRFLOW_CONN_<ID>) of this server."""
        extra = {"disable_tls": True, "disable_ssl": True, "from_email": sender, "retry_limit": 0}
        return json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra}
        )


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink(port=localredis.free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            sink.messages.append(
                email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            )
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def dead_url() -> str:
    """An HTTP URL nothing listens on."""
    return f"http://127.0.0.1:{localredis.free_port()}/nobody-home"
