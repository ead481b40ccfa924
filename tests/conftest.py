"""Shared fixtures: real servers started by the tests themselves (Redis, moto's S3 over HTTP),
and the test tiers.

Nothing here assumes a service is already running on the machine.

Every test has exactly one tier (pyproject.toml's markers): its module's `pytestmark`, or its own
mark in a module that mixes tiers. `make test-fast` runs the unit tier (`-m unit`) alone, so a
test without a tier would silently never run there and a test with two would run where it does
not belong: either refuses the whole run. A unit test that asks for a fixture starting a server
fails: before any fixture is set up when that fixture is one of its arguments, as the fixture is
set up when the test asks for it while running (`request.getfixturevalue`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore, S3Store
from mlpipeline.devtools import localredis
from tests import postgres_cluster
from tests.e2e_env import OVERRIDES

TIERS = ("unit", "integration", "e2e", "stack")
# The modules CI's durations show longest (`make demo` and the UI, a scheduled night on the stack).
LONGEST_MODULES = ("tests/test_ui_browser.py", "tests/test_stack.py")
# Fixtures a unit test may not use, and why: the ones here and in test modules that start a server,
# and the end-to-end history (weeks of catch-up).
NOT_IN_UNIT = {
    "redis_server": "starts redis-server",
    "redis_url": "starts redis-server",
    "postgres_server": "starts a PostgreSQL cluster",
    "s3_endpoint": "starts moto's S3 server",
    "s3_store": "starts moto's S3 server",
    "e2e_history": "catches up six weeks of history",
    "sinks": "starts local HTTP and SMTP servers",
    "alert_hook": "starts a local HTTP server",
    "served": "starts the scoring HTTP server",
    "mlflow_url": "starts an MLflow server",
    "stack": "starts the Airflow services",
    "page": "starts Chromium",
}


def _tiers(item: pytest.Item) -> list[str]:
    """The distinct tier marks of a test: its own, its parametrization's and its module's."""
    return list(dict.fromkeys(m.name for m in item.iter_markers() if m.name in TIERS))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse the run when a test has no tier or several; first, before `-m` deselects any."""
    problems: dict[str, None] = {}
    for item in items:
        tiers = _tiers(item)
        if not tiers:
            problems[f"{item.nodeid.split('::')[0]}: no tier"] = None
        elif len(tiers) > 1:
            problems[f"{item.nodeid}: {' and '.join(tiers)}"] = None
    if problems:
        raise pytest.UsageError(
            f"every test needs exactly one tier among {', '.join(TIERS)}: a module-level "
            "`pytestmark = pytest.mark.<tier>`, or a mark per test where a module mixes tiers\n  "
            + "\n  ".join(problems)
        )
    _slowest_modules_first(items)


def _slowest_modules_first(items: list[pytest.Item]) -> None:
    """Modules of the slowest tier first, the longest of a tier before the others (each module
    kept whole, collection order otherwise), so that `make test`'s workers, handed modules in
    this order, finish close together."""
    slowest_tier: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        slowest_tier[module] = max(slowest_tier.get(module, 0), TIERS.index(_tiers(item)[0]))

    def rank(item: pytest.Item) -> tuple[int, bool]:
        module = item.nodeid.split("::")[0]
        return -slowest_tier[module], module not in LONGEST_MODULES

    items.sort(key=rank)


def _refuse_in_unit(item: pytest.Item, fixtures: list[str]) -> None:
    if fixtures and _tiers(item) == ["unit"]:
        used = ", ".join(f"{name} ({NOT_IN_UNIT[name]})" for name in fixtures)
        pytest.fail(
            f"{item.nodeid} is marked unit but uses {used}: a unit test starts no server; "
            "mark it integration (or e2e)",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A unit test asking for a server fails before any of its fixtures is set up."""
    _refuse_in_unit(item, [n for n in getattr(item, "fixturenames", ()) if n in NOT_IN_UNIT])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port for the whole session."""
    url, _ = localredis.start(tmp_path_factory.mktemp("redis"), persist=False)
    yield url
    localredis.stop(url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres_cluster.Cluster]:
    """A private PostgreSQL cluster on a free loopback port for the whole session (Debian's
    binaries: `make stack-deps`; missing, the tests that need it skip, except with CI=true)."""
    if postgres_cluster.bindir() is None:
        message = "PostgreSQL's server binaries are missing: `make stack-deps` as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the tests that need PostgreSQL must run)")
        pytest.skip(message)
    # Not under pytest's temporary folder: as root the cluster's owner is `postgres`, who
    # cannot traverse it.
    base = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    cluster = postgres_cluster.init(
        base, user="mlpipeline", password=uuid.uuid4().hex, port=localredis.free_port()
    )
    with (base / "server.log").open("ab") as log_file:
        process = subprocess.Popen(
            cluster.argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        postgres_cluster.wait_ready(cluster, process, base / "server.log")
        yield cluster
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def redis_url(request: pytest.FixtureRequest, redis_server: str) -> Iterator[str]:
    """A clean database on the session's server for each test."""
    import redis

    _refuse_in_unit(request.node, ["redis_url"])  # also when asked for by getfixturevalue
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
def s3_store(request: pytest.FixtureRequest, s3_endpoint: str) -> S3Store:
    """A fresh bucket on the moto server, behind the project's S3 object store."""
    import boto3

    _refuse_in_unit(request.node, ["s3_store"])  # also when asked for by getfixturevalue
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return S3Store(bucket, s3_endpoint)


@pytest.fixture()
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objectstore")


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing every local artefact at a temporary data folder, with the warehouse
    setup would have made there."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
    for var in OVERRIDES:
        monkeypatch.delenv(var, raising=False)
    settings = Settings.from_env()
    warehouse.create(settings)
    return settings


@pytest.fixture(scope="session")
def e2e_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multi-day history of the end-to-end stories (tests/history.py), built once per run:
    `make test`'s workers share it (the first to ask builds it under a lock, the others wait).
    Each story copies it with `copy_history` and never writes here."""
    from filelock import FileLock

    from tests import history

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, built = root / "e2e-history", root / "e2e-history.built"
    with FileLock(root / "e2e-history.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            history.build(folder)
            built.touch()
    return folder
