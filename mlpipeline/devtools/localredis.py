"""A private Redis server for laptop runs and tests, started only here (the library never
starts one), and only when `REDIS_URL` is unset.

The machine may already run a Redis on 6379; the project never depends on it, so local runs
start their own on a free port with persistence in the data folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from mlpipeline.core.config import Settings


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError(
            "redis-server is not installed. Install it (Debian/Ubuntu: "
            "`sudo apt-get install -y redis-server`) or set REDIS_URL to a running server."
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(workdir: Path, port: int | None = None, persist: bool = True) -> tuple[str, Path]:
    """Start redis-server daemonised on loopback; return its URL and pidfile."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pidfile = workdir / f"redis-{port}.pid"
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "yes",
        "--pidfile",
        str(pidfile),
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / f"redis-{port}.log"),
        "--appendonly",
        "no",
        "--save",
        "60 1000" if persist else "",
    ]
    subprocess.run(args, check=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return url, pidfile
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on port {port} did not start; see {workdir}"
                ) from None
            time.sleep(0.05)


def stop(url: str) -> None:
    try:
        redis.Redis.from_url(url).shutdown(nosave=False)
    except redis.ConnectionError:
        pass


def running_url(workdir: Path) -> str | None:
    """The local run's Redis URL (kept in workdir) if that server answers, else None."""
    url_file = workdir / "url"
    if not url_file.exists():
        return None
    url = url_file.read_text().strip()
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        return None
    return url


def ensure_local(workdir: Path) -> str:
    """Reuse the local run's Redis if it is up, else start one."""
    url = running_url(workdir)
    if url is None:
        url, _ = start(workdir)
        (workdir / "url").write_text(url)
    return url


def resolve_url(settings: Settings) -> str:
    """`REDIS_URL` when set, else the local run's own private server (started if down)."""
    return settings.redis_url or ensure_local(settings.data_dir / "redis")


def local_settings(settings: Settings) -> Settings:
    """`settings` with the local run's Redis when `REDIS_URL` is unset and that server is up:
    the CLI's online and scoring commands read what `make demo` switched in, starting nothing."""
    if settings.redis_url:
        return settings
    return settings.model_copy(update={"redis_url": running_url(settings.data_dir / "redis")})
