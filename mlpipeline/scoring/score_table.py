"""The score table downstream apps read: its location, schema, checks and readers.

A Delta Lake table at `scores/transaction_scores/` in the object store, partitioned by `dt`,
with its schema enforced and earlier versions readable (time travel); the same rows land in
the warehouse (`scores.transaction_scores`, view `scores.latest`) for analysts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlparse

import duckdb
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, Schema
from deltalake.exceptions import TableNotFoundError

from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import LocalStore, ObjectStore, S3Store
from mlpipeline.warehouse import lake

SCORE_TABLE_KEY = "scores/transaction_scores"


# The downstream contract. Timestamps are UTC instants (Delta `timestamp`, readable by every
# Delta reader); DuckDB keeps them as naive UTC like the rest of the warehouse.
SCORE_SCHEMA = pa.schema(
    [
        pa.field("dt", pa.date32(), nullable=False),
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("decision", pa.bool_(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("snapshot_cutoff", pa.date32(), nullable=True),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("revision", pa.string(), nullable=False),
        pa.field("scoring_run_id", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


DDL = """
CREATE SCHEMA IF NOT EXISTS scores;
CREATE TABLE IF NOT EXISTS scores.transaction_scores (
    dt DATE NOT NULL,
    transaction_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    decision BOOLEAN NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    snapshot_cutoff DATE,
    batch_id VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    scoring_run_id VARCHAR NOT NULL,
    scored_at TIMESTAMP NOT NULL
);
"""


_VIEWS = {
    "scores.latest": "SELECT * FROM scores.transaction_scores QUALIFY row_number() OVER "
    "(PARTITION BY transaction_id ORDER BY scored_at DESC, dt DESC) = 1"
}


class ScoreTableSchemaError(ValueError):
    """The Delta table at the score location does not have the contract's schema."""


class ScoreTableNotFound(LookupError):
    """No score table exists at the location yet."""


class ScoreCountMismatch(RuntimeError):
    """The rows scored or published differ from the rows there were to score."""


@dataclass(frozen=True)
class DeltaLocation:
    uri: str
    storage_options: dict[str, str] | None


def score_table_location(target: Settings | ObjectStore) -> DeltaLocation:
    """Where the score table lives for these settings or this store, and how delta-rs reaches it."""
    return delta_location(target, SCORE_TABLE_KEY)


def delta_location(target: Settings | ObjectStore, key: str) -> DeltaLocation:
    """Where the Delta table at `key` of the object store lives, and how delta-rs reaches it.

    The folder store gives a local path. S3 gives `s3://bucket/...` plus the endpoint, plain
    HTTP when the endpoint is `http://` (MinIO, moto) and the region boto3 resolved, so
    delta-rs talks to the same service as the rest of the pipeline. Credentials come from the
    usual AWS variables, which delta-rs reads itself.
    """
    if isinstance(target, Settings):
        if target.bucket:
            import boto3

            return _s3_location(
                target.bucket, key, target.aws_endpoint_url, boto3.session.Session().region_name
            )
        return DeltaLocation(str(target.local_store_root.resolve() / key), None)
    if isinstance(target, LocalStore):
        return DeltaLocation(str(target.root.resolve() / key), None)
    if isinstance(target, S3Store):
        endpoint = target.client.meta.endpoint_url
        # boto3 names AWS's own endpoint even when none was configured; delta-rs picks the
        # right one for the region itself, so only a custom endpoint is passed on.
        if (urlparse(endpoint).hostname or "").endswith(".amazonaws.com"):
            endpoint = None
        return _s3_location(target.bucket, key, endpoint, target.client.meta.region_name)
    raise TypeError(
        f"cannot locate the Delta table {key} for {type(target).__name__}: pass Settings, a "
        "LocalStore or an S3Store"
    )


def _s3_location(bucket: str, key: str, endpoint: str | None, region: str | None) -> DeltaLocation:
    # deltalake 1.x commits each log entry with a put-if-absent (If-None-Match: *), so two
    # writers can never both claim a version and no locking provider or unsafe rename is
    # needed. `aws_conditional_put: etag` also allows If-Match updates where delta-rs uses them.
    options = {"aws_conditional_put": "etag"}
    if region:
        options["AWS_REGION"] = region
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return DeltaLocation(f"s3://{bucket}/{key}", options)


def ensure_score_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)
    lake.ensure_views(con, _VIEWS)


def read_scores(
    target: Settings | ObjectStore,
    day: str | date | datetime | None = None,
    *,
    version: int | None = None,
) -> pd.DataFrame:
    """The published scores (one day, or all), straight from the Delta table, without DuckDB.

    Downstream apps use this while the nightly holds the warehouse. `version` reads an
    earlier table version (time travel), e.g. the scores as they were before a re-run.
    """
    table = open_score_table(target, version)
    filters = None if day is None else [("dt", "=", parse_day(day))]
    return table.to_pandas(filters=filters)


def open_score_table(target: Settings | ObjectStore, version: int | None = None) -> DeltaTable:
    """The score table at `version` (default the newest), for readers outside the warehouse."""
    location = score_table_location(target)
    try:
        return DeltaTable(location.uri, version=version, storage_options=location.storage_options)
    except TableNotFoundError as exc:
        raise ScoreTableNotFound(
            f"no score table at {location.uri}: no day has been scored there yet. Check the "
            "bucket / data folder the reader points at, or run scoring for a day first."
        ) from exc


def check_table_schema(location: DeltaLocation) -> None:
    """Refuse to write to a table whose schema or partitioning is not the contract's."""
    try:
        table = DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        return
    expected = {
        f.name: (_delta_type(f), f.nullable) for f in Schema.from_arrow(SCORE_SCHEMA).fields
    }
    actual = {f.name: (_delta_type(f), f.nullable) for f in table.schema().fields}
    problems = [
        f"missing column {name} ({kind})"
        for name, (kind, _) in expected.items()
        if name not in actual
    ]
    problems += [
        f"column {name} is {actual[name][0]} {'NULL' if actual[name][1] else 'NOT NULL'}, "
        f"expected {kind} {'NULL' if nullable else 'NOT NULL'}"
        for name, (kind, nullable) in expected.items()
        if name in actual and actual[name] != (kind, nullable)
    ]
    problems += [f"unexpected column {name}" for name in actual if name not in expected]
    partitions = table.metadata().partition_columns
    if partitions != ["dt"]:
        problems.append(f"partitioned by {partitions}, expected ['dt']")
    if problems:
        raise ScoreTableSchemaError(
            f"the score table at {location.uri} (version {table.version()}) does not match the "
            f"score contract: {'; '.join(problems)}. Nothing was written. Readers depend on "
            "this schema: migrate the table deliberately (agree with its consumers first) or "
            "move the old table away, then re-run scoring."
        )


def _delta_type(field: Any) -> str:
    return getattr(field.type, "type", None) or str(field.type)
