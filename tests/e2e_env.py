"""The environment of an end-to-end story: this process and the Airflow runs it starts point at a
private data folder and a private Redis database, and everything is put back afterwards."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlpipeline import online
from mlpipeline.core.config import Settings

# Whatever would point the story at shared services or another data folder.
OVERRIDES = (
    "WAREHOUSE_CATALOG",
    "WAREHOUSE_DATA_PATH",
    "DUCKDB_PATH",
    "MLFLOW_TRACKING_URI",
    "MLPIPELINE_BUCKET",
    "AWS_ENDPOINT_URL",
    "AIRFLOW_API_URL",
)


def private_redis(server_url: str, db: int) -> str:
    """Database `db` of the session's Redis server: one per story, so stories never share keys."""
    return f"{server_url.rsplit('/', 1)[0]}/{db}"


@contextmanager
def pipeline_env(
    data_dir: Path,
    redis_url: str | None,
    *,
    unset: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> Iterator[Settings]:
    """Settings for the story, read back from the environment the way every stage reads them
    (`extra` sets more variables last); the Redis database starts empty. Without `redis_url`
    (what builds only history, with no online store) REDIS_URL is unset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPIPELINE_DATA_DIR", str(data_dir))
        for var in ("REDIS_URL", *OVERRIDES, *unset):
            patch.delenv(var, raising=False)
        if redis_url:
            patch.setenv("REDIS_URL", redis_url)
            online.as_client(redis_url).flushdb()
        for var, value in (extra or {}).items():
            patch.setenv(var, value)
        yield Settings.from_env()
