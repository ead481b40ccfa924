"""Redis clients of the online store: from configuration, with retries, passwords redacted."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from urllib.parse import urlsplit, urlunsplit

import redis
import tenacity
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mlpipeline.core.config import ConfigurationError, Settings
from mlpipeline.core.retry import retrying
from mlpipeline.online.keys import OnlineStoreUnavailable

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def connect(url: str, *, attempts: int = 5, delay: float = 0.5) -> redis.Redis:
    """A client for `url`, once the server answers; retries with backoff, then fails clearly."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=60,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
    )

    def on_retry(attempt: int, sleep: float, outcome: Future) -> None:
        log.warning(
            "Redis at %s did not answer (attempt %d/%d): %s; retrying in %.1fs",
            redact(url),
            attempt,
            attempts,
            outcome.exception(),
            sleep,
        )

    try:
        retrying(
            attempts=attempts,
            wait=tenacity.wait_exponential(multiplier=delay),
            # A refused password is no use retrying (AuthenticationError is a ConnectionError).
            retry=tenacity.retry_if_exception(
                lambda exc: (
                    isinstance(exc, redis.ConnectionError | redis.TimeoutError)
                    and not isinstance(exc, redis.AuthenticationError)
                )
            ),
            on_retry=on_retry,
        )(client.ping)
    except redis.AuthenticationError as exc:
        raise OnlineStoreUnavailable(
            f"Redis at {redact(url)} refused the credentials: {exc}. Check the user and "
            "password in REDIS_URL."
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise OnlineStoreUnavailable(
            f"cannot reach Redis at {redact(url)} after {attempts} attempts: {exc}. "
            "Check that the server runs and that REDIS_URL points at it."
        ) from exc
    return client


def redis_client(settings_or_url: Settings | str | None = None) -> redis.Redis:
    """Client of a Redis URL, or of the configured one (`REDIS_URL`). URLs:
    `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS (e.g.
    `?ssl_ca_certs=/path/ca.pem`, `?ssl_cert_reqs=none`), `unix:///path.sock?db=N`.

    The library never starts a server: a missing URL is a configuration error, so a deployment
    that forgot `REDIS_URL` fails at once instead of writing features nobody serves."""
    if isinstance(settings_or_url, str):
        return connect(settings_or_url)
    url = (settings_or_url or Settings.from_env()).redis_url
    if not url:
        raise ConfigurationError(
            "REDIS_URL is not set: the online store needs the URL of its Redis "
            "(redis://host:port/db). On a laptop, `make demo` and `make ui` start a local one, "
            "which the `mlpipeline online` and `serve` commands find by themselves."
        )
    return connect(url)


def as_client(client_or_url: redis.Redis | str) -> redis.Redis:
    return connect(client_or_url) if isinstance(client_or_url, str) else client_or_url
