"""Transaction in, score out: the customer's vector from the current Redis snapshot (one round
trip, `mlpipeline.online`) joined to the transaction's fields, scored with the champion's saved
scikit-learn Pipeline, the same object batch scoring loads.

The request-time features (amount against the customer's mean, seconds since the last
transaction, hour, foreign country, ...) are computed inside that Pipeline, so online and batch
scores of the same transaction against the same snapshot are equal. The champion is re-resolved
every `refresh_seconds`, so a promotion or a model rollback reaches a running server without a
restart. Nothing here knows HTTP: `mlpipeline.scoring.api` answers requests with it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import redis

from mlpipeline.online import NoCurrentSnapshot, OnlineReader, OnlineStoreError
from mlpipeline.scoring.request_log import RequestLog, served_record
from mlpipeline.scoring.schemas import HealthReport, ScoreResult, Transaction
from mlpipeline.training import model_registry

log = logging.getLogger(__name__)

DEFAULT_MODEL_REFRESH_SECONDS = 60.0


class Unavailable(RuntimeError):
    """The server cannot score now (HTTP 503): no champion, no snapshot or Redis down."""


@dataclass(frozen=True)
class LoadedModel:
    ref: model_registry.ChampionRef
    model: Any


class ChampionCache:
    """The champion's model, re-resolved at most every `refresh_seconds`.

    A refresh that fails (MLflow unreachable) keeps serving the loaded version and logs why; a
    new version is loaded before it replaces the old one, so requests never wait on a load
    another thread started.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS,
        resolve: Callable[[str], model_registry.ChampionRef | None] | None = None,
        load: Callable[[model_registry.ChampionRef], Any] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self._resolve = resolve or model_registry.resolve_champion
        self._load = load or model_registry.load_model
        self._loaded: LoadedModel | None = None
        self._checked_at = -math.inf
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self) -> LoadedModel | None:
        due = time.monotonic() - self._checked_at >= self.refresh_seconds
        if due and self._lock.acquire(blocking=self._loaded is None):
            try:
                if time.monotonic() - self._checked_at >= self.refresh_seconds:
                    self._refresh()
            finally:
                self._lock.release()
        return self._loaded

    def _refresh(self) -> None:
        try:
            ref = self._resolve(self.tracking_uri)
            current = self._loaded
            if ref is None:
                if current is not None:
                    log.warning("no champion resolves any more; keeping version %s", current.ref)
            elif current is None or current.ref.version != ref.version:
                self._loaded = LoadedModel(ref, self._load(ref))
                log.info("serving %s version %s (alias %s)", ref.name, ref.version, ref.alias)
            elif current.ref != ref:
                self._loaded = LoadedModel(ref, current.model)  # same version, new threshold
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("could not refresh the champion from %s", self.tracking_uri)
        finally:
            self._checked_at = time.monotonic()


class Scorer:
    """Blocking (Redis, the model): the API calls it from its thread pool. With a request log,
    every answered request is recorded there (a buffer: never waits on the object store)."""

    def __init__(
        self,
        reader: OnlineReader,
        champion: ChampionCache,
        request_log: RequestLog | None = None,
    ) -> None:
        self.reader = reader
        self.champion = champion
        self.request_log = request_log

    def score(self, transaction: Transaction) -> ScoreResult:
        requested = datetime.now(UTC)
        loaded = self.champion.get()
        if loaded is None:
            if self.champion.last_error:
                raise Unavailable(f"the champion cannot be loaded: {self.champion.last_error}")
            raise Unavailable(
                f"no model yet: no version of {model_registry.MODEL_NAME} carries the alias "
                f"{model_registry.CHAMPION_ALIAS!r}; the nightly promotes one once enough "
                "labelled history exists"
            )
        try:
            read = self.reader.read([transaction.customer_id])
        except NoCurrentSnapshot as exc:
            raise Unavailable(str(exc)) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(f"the online store (Redis) cannot be reached: {exc}") from exc
        frame = pd.DataFrame([{**transaction.model_dump(), **read.rows[0]}])
        score = float(loaded.model.predict_proba(frame)[0, 1])
        threshold = float(loaded.ref.decision_threshold)
        result = ScoreResult(
            transaction_id=transaction.transaction_id,
            customer_id=transaction.customer_id,
            score=score,
            decision=score >= threshold,
            decision_threshold=threshold,
            model_name=loaded.ref.name,
            model_version=str(loaded.ref.version),
            snapshot_cutoff=read.cutoff,
            snapshot_export_id=read.export_id,
            customer_known=read.known[0],
        )
        if self.request_log is not None:
            self.request_log.record(
                served_record(
                    requested, transaction.model_dump(), read.rows[0], result.model_dump()
                )
            )
        return result

    def health(self) -> HealthReport:
        """Only the fields that apply are set (the API answers with the set ones)."""
        loaded = self.champion.get()
        report: dict[str, Any] = {
            "model_version": loaded.ref.version if loaded else None,
            "model_name": model_registry.MODEL_NAME,
        }
        try:
            read = self.reader.read([])
            report.update(snapshot_cutoff=read.cutoff, snapshot_export_id=read.export_id)
        except (OnlineStoreError, redis.RedisError) as exc:
            report["snapshot_error"] = str(exc)
        if self.request_log is not None:
            report["request_log"] = self.request_log.stats()
        ok = loaded is not None and "snapshot_error" not in report
        return HealthReport(status="ok" if ok else "unavailable", **report)
