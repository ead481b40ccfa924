"""The online scoring service's request log: every answered `/score` request, kept for the
nightly to replay against the batch scores (training/serving skew on real traffic).

A request's record (request time in UTC, the transaction as validated, the online feature
values the scorer used as `feature_<name>` columns, snapshot, model, score and decision) goes
into a bounded in-memory buffer; a background thread writes the buffer to the object store in
Parquet files of at most `batch_size` records, when a batch is full, `flush_seconds` after the
previous write, and on close:

    serving/requests/dt=YYYY-MM-DD/<host>-<pid>-<start>-<seq>.parquet

`dt` is the request's UTC day (a batch across midnight is written as one file per day). A
request never waits on the object store: with the buffer full its record is dropped and
counted (one warning per spell of drops); an upload is tried UPLOAD_ATTEMPTS times, then its
batch is dropped, counted and logged as an error. `stats()` gives the counts (`GET /health`
shows them).
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tenacity

from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.core.retry import retrying
from mlpipeline.scoring.schemas import RequestLogStats, ScoreResult, Transaction

log = logging.getLogger(__name__)

PREFIX = "serving/requests"
FEATURE_PREFIX = "feature_"
# The columns of every record; the served features come after them.
COLUMNS = list(dict.fromkeys(["request_ts", *ScoreResult.model_fields, *Transaction.model_fields]))
UPLOAD_ATTEMPTS = 3
RETRY_SECONDS = 1.0
CLOSE_TIMEOUT_SECONDS = 60.0


def day_prefix(day: date) -> str:
    return f"{PREFIX}/dt={day.isoformat()}/"


def served_record(
    request_ts: datetime,
    transaction: Mapping[str, Any],
    features: Mapping[str, Any],
    result: Mapping[str, Any],
) -> dict[str, Any]:
    """One row of the log: the answer's fields, the transaction's, the served features'."""
    return {
        "request_ts": request_ts,
        **result,
        **transaction,
        **{FEATURE_PREFIX + name: value for name, value in features.items()},
    }


class RequestLog:
    """Bounded buffer plus one writer thread; `record` is cheap and never blocks on I/O."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
        started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._name = f"{host}-{os.getpid()}-{started}"
        self._sequence = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._full_warned = False  # one warning per spell of drops, until the next write
        self._stats = RequestLogStats()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore) -> RequestLog:
        return cls(
            store,
            queue_size=settings.request_log_queue_size,
            batch_size=settings.request_log_batch_size,
            flush_seconds=settings.request_log_flush_seconds,
        )

    def record(self, row: dict[str, Any]) -> None:
        """Buffer one request's row; when the buffer is full (or the log closed), count a drop."""
        with self._lock:
            if not self._closed and len(self._pending) < self.queue_size:
                self._pending.append(row)
                self._stats.accepted += 1
                if len(self._pending) >= self.batch_size:
                    self._wake.set()
                return
            self._stats.dropped_queue_full += 1
            warn, self._full_warned = not self._full_warned, True
        if warn:
            log.warning(
                "request log: buffer full (%d requests) or closed, dropping requests until the "
                "next write; is the object store %s slow? (GET /health counts them)",
                self.queue_size,
                self.store.url,
            )

    def stats(self) -> RequestLogStats:
        with self._lock:
            # Every field given, so an answer that leaves out unset fields still shows them all.
            return RequestLogStats(**{**self._stats.model_dump(), "queued": len(self._pending)})

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what is buffered and stop the writer (idempotent); later records are dropped."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        stats = self.stats()
        if self._thread.is_alive():
            log.error(
                "request log: still writing after %.0f s at shutdown; %d buffered requests are "
                "lost. Check that the object store %s answers",
                timeout,
                stats.queued,
                self.store.url,
            )
        log.info("request log closed: %s", stats.model_dump())

    def _run(self) -> None:
        while True:
            # Woken early by a full batch (or by close); else flush_seconds passed.
            woken = self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closed  # read before draining: nothing is accepted after it is set
            # A full batch's wake writes full batches only: under steady traffic the files stay
            # batch_size long instead of holding whatever arrived during the previous write.
            while batch := self._take(full_only=woken and not closing):
                self._write(batch)
            if closing:
                return

    def _take(self, *, full_only: bool) -> list[dict[str, Any]]:
        with self._lock:
            if full_only and len(self._pending) < self.batch_size:
                return []
            count = min(self.batch_size, len(self._pending))
            return [self._pending.popleft() for _ in range(count)]

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_day: dict[date, list[dict[str, Any]]] = {}
        for row in batch:
            by_day.setdefault(row["request_ts"].date(), []).append(row)
        for day, rows in by_day.items():
            self._sequence += 1
            key = f"{day_prefix(day)}{self._name}-{self._sequence:06d}.parquet"
            self._upload(key, rows)

    def _upload(self, key: str, rows: list[dict[str, Any]]) -> None:
        try:
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rows), sink)
        except Exception as exc:  # noqa: BLE001 - a row the encoder refuses: drop the batch
            self._dropped(key, rows, exc, "the rows could not be encoded as Parquet")
            return
        put = retrying(
            attempts=UPLOAD_ATTEMPTS,
            wait=tenacity.wait_exponential(multiplier=RETRY_SECONDS),
            retry=tenacity.retry_if_exception_type(Exception),
            on_retry=lambda attempt, wait, outcome: log.warning(
                "request log: writing %s failed (attempt %d of %d, next in %.1f s): %s",
                key,
                attempt,
                UPLOAD_ATTEMPTS,
                wait,
                outcome.exception(),
            ),
        )
        try:
            put(self.store.put_bytes, key, sink.getvalue())
        except Exception as exc:  # noqa: BLE001 - any store failure, once retried, is counted
            self._dropped(
                key,
                rows,
                exc,
                f"check that the object store {self.store.url} is reachable and writable under "
                f"{PREFIX}/ (MLPIPELINE_BUCKET, AWS_ENDPOINT_URL, credentials)",
            )
            return
        with self._lock:
            self._stats.written += len(rows)
            self._stats.files_written += 1
            self._full_warned = False
            dropped = self._stats.dropped_queue_full
        log.info(
            "request log: wrote %d requests to %s (dropped so far with the buffer full: %d)",
            len(rows),
            key,
            dropped,
        )

    def _dropped(self, key: str, rows: list[dict[str, Any]], error: Exception, hint: str) -> None:
        with self._lock:
            self._stats.dropped_upload_failed += len(rows)
            self._stats.last_error = f"{type(error).__name__}: {error}"[:500]
        log.error(
            "request log: %d requests dropped, %s not written (%s: %s); %s",
            len(rows),
            key,
            type(error).__name__,
            error,
            hint,
        )


def read_requests(store: ObjectStore, day: date) -> pd.DataFrame:
    """Every logged request of UTC day `day` (all servers, all files), in request order; empty
    when none was logged. Files written with different feature sets are unified (missing: null)."""
    keys = [k for k in store.list(day_prefix(day)) if k.endswith(".parquet")]
    if not keys:
        return pd.DataFrame(columns=COLUMNS)
    tables = [pq.read_table(io.BytesIO(store.get_bytes(key))) for key in keys]
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("request_ts").to_pandas().reset_index(drop=True)
