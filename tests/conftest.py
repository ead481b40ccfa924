"""Shared fixtures: real servers started by the tests themselves (Redis, moto's S3 over HTTP).

Nothing here assumes a service is already running on the machine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipeline import localredis
from mlpipeline.config import Settings
from mlpipeline.objectstore import LocalStore, S3Store


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port for the whole session."""
    url, _ = localredis.start(tmp_path_factory.mktemp("redis"), persist=False)
    yield url
    localredis.stop(url)


@pytest.fixture()
def redis_url(redis_server: str) -> Iterator[str]:
    """A clean database on the session's server for each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    yield redis_server
    client.flushdb()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on loopback."""
    from moto.server import ThreadedMotoServer

    port = localredis.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_store(s3_endpoint: str) -> S3Store:
    """A fresh bucket on the moto server, behind the project's S3 object store."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return S3Store(bucket, s3_endpoint)


@pytest.fixture()
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objectstore")


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing every local artefact at a temporary data folder."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
    for var in ("DUCKDB_PATH", "MLFLOW_TRACKING_URI", "MLPIPELINE_BUCKET", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return Settings.from_env()
