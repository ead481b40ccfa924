"""The scoring API's request and answers as pydantic models (and so its OpenAPI schema).

The request's checks are the landing contract's, written as validators that raise one
`transaction_field` error each, so that a malformed transaction is answered with every problem
at once (`mlpipeline.scoring.api` turns them into the API's 400).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

FIELD_ERROR = "transaction_field"


def _problem(reason: str) -> PydanticCustomError:
    # The reason is passed as context, so braces in it are never read as a template.
    return PydanticCustomError(FIELD_ERROR, "{reason}", {"reason": reason})


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _problem("expected a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _positive_number(value: Any) -> float:
    """A JSON number or numeric text (never a boolean), finite and above zero."""
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise _problem("expected a positive number")
    return number


def _utc_timestamp(value: Any) -> datetime:
    """ISO-8601 text to a naive UTC datetime (the warehouse's convention); naive means UTC."""
    if not isinstance(value, str):
        raise _problem("expected an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _problem(str(exc)) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


Text = Annotated[str, BeforeValidator(_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
Amount = Annotated[float, BeforeValidator(_positive_number), Field(gt=0)]
Timestamp = Annotated[datetime, BeforeValidator(_utc_timestamp)]


class Transaction(BaseModel):
    """One transaction in the landing contract's fields, typed like a
    `features.transaction_features` row; fields not listed here are ignored."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "t-1",
                    "customer_id": "c000123",
                    "merchant_id": "m0042",
                    "merchant_category": "electronics",
                    "amount": 349.99,
                    "currency": "EUR",
                    "country": "NL",
                    "channel": "online",
                    "event_ts": "2026-03-01T10:15:00Z",
                }
            ]
        }
    )

    customer_id: Text
    merchant_category: Text
    country: Text
    channel: Text
    transaction_id: OptionalText = None
    merchant_id: OptionalText = None
    currency: OptionalText = None
    amount: Amount
    event_ts: Timestamp = Field(description="ISO-8601; UTC when it has no offset")

    @model_validator(mode="before")
    @classmethod
    def _absent_is_null(cls, data: Any) -> Any:
        """An absent field is checked as null, so its problem says what was expected."""
        if isinstance(data, dict):
            return {name: None for name in cls.model_fields} | data
        return data


class ScoreResult(BaseModel):
    """The score of one transaction and exactly what produced it."""

    transaction_id: str | None
    customer_id: str
    score: float
    decision: bool = Field(description="score >= decision_threshold")
    decision_threshold: float
    model_name: str
    model_version: str
    snapshot_cutoff: str | None
    snapshot_export_id: str
    customer_known: bool = Field(description="false: the snapshot's declared defaults were used")


class RequestLogStats(BaseModel):
    """The request log's counts since the server started (`mlpipeline.scoring.request_log`).
    Each accepted request ends up written or dropped_upload_failed (queued: still buffered);
    dropped_queue_full ones were refused, the buffer being full (or the server stopping)."""

    accepted: int = 0
    queued: int = 0
    written: int = 0
    files_written: int = 0
    dropped_queue_full: int = 0
    dropped_upload_failed: int = 0
    last_error: str | None = None


class HealthReport(BaseModel):
    """`ok` when a champion and a current snapshot are available; the snapshot's fields are
    present when it could be read, `snapshot_error` when it could not."""

    status: str
    model_version: str | None
    model_name: str
    snapshot_cutoff: str | None = None
    snapshot_export_id: str | None = None
    snapshot_error: str | None = None
    request_log: RequestLogStats | None = Field(
        None, description="the request log's counts; absent when request logging is off"
    )


class ErrorBody(BaseModel):
    """Every error answer: 400 lists every problem of the request in one message."""

    error: str
