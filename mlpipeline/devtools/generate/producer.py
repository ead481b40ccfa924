"""The upstream producer: data files first, then `_SUCCESS` listing them with row counts."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlpipeline.core import landing
from mlpipeline.core.days import day_range, parse_day
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.devtools.generate.rows import DayPlan, chargeback_rows, day_plan, transactions_part
from mlpipeline.devtools.generate.world import FILE_FORMATS, Population, population

log = logging.getLogger(__name__)


def _write_table(table: pa.Table, path: Path, file_format: str) -> None:
    if file_format == "csv":
        # pyarrow quotes header names; producers commonly write a plain header, so do that.
        with path.open("wb") as handle:
            handle.write((",".join(table.column_names) + "\n").encode())
            options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
            pa_csv.write_csv(table, handle, options)
    else:
        pq.write_table(table, path, compression="zstd")


def _land(
    store: ObjectStore,
    dataset: str,
    day: date,
    tables: Iterable[pa.Table],
    file_format: str,
    tmp: Path,
) -> list[str]:
    """Deliver a dataset-day like a producer: parts first, then `_SUCCESS` listing them.

    The old `_SUCCESS` goes first so a reader never pairs it with new parts; parts of an earlier
    delivery that this one does not list are removed before the new `_SUCCESS` is written.
    """
    folder = landing.day_prefix(dataset, day)
    store.delete(landing.success_key(dataset, day))
    parts: list[tuple[str, int]] = []
    for table in tables:
        if not table.num_rows:
            continue
        name = f"part-{len(parts):05d}.{'csv' if file_format == 'csv' else 'parquet'}"
        path = tmp / name
        _write_table(table, path, file_format)
        store.put_file(folder + name, path)
        path.unlink()
        parts.append((name, table.num_rows))
    listed = {name for name, _ in parts}
    for key in store.list(folder):
        if key.rsplit("/", 1)[-1] not in listed:
            store.delete(key)
    landing.write_success(
        store, dataset, day, [landing.DeclaredFile(name, rows) for name, rows in parts]
    )
    return [folder + name for name, _ in parts] + [landing.success_key(dataset, day)]


def _land_transactions(
    store: ObjectStore,
    day: date,
    pop: Population,
    plan: DayPlan,
    seed: int,
    rows_per_file: int,
    file_format: str,
    tmp: Path,
) -> list[str]:
    """The day's transactions in files of `rows_per_file`, generated one file at a time."""
    total = int(plan.row_end[-1]) if pop.customers else 0
    n_files = -(-total // rows_per_file)
    began = time.monotonic()

    def parts() -> Iterator[pa.Table]:
        for part in range(n_files):
            rows = (part * rows_per_file, min(total, (part + 1) * rows_per_file))
            yield transactions_part(pop, seed, day, part, rows, plan, file_format)
            rate = rows[1] / max(time.monotonic() - began, 1e-9)
            log.info(
                "transactions dt=%s: part %d/%d (%d of %d rows, %.0f rows/s, ~%.1fs left)",
                day,
                part + 1,
                n_files,
                rows[1],
                total,
                rate,
                (total - rows[1]) / rate,
            )

    return _land(store, "transactions", day, parts(), file_format, tmp)


def _first_landed_day(store: ObjectStore) -> date | None:
    """The earliest day whose transactions delivery is complete (has `_SUCCESS`)."""
    days = [
        parse_day(key.split("dt=", 1)[1])
        for key in store.list("landing/transactions/dt=")
        if key.endswith("/_SUCCESS")
    ]
    return min(days, default=None)


def _check_args(customers: int, seed: int, fraud_rate: float, rows_per_file: int, fmt: str) -> None:
    if customers < 0:
        raise ValueError(f"customers must be >= 0 (0 writes an empty day), got {customers}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5), got {fraud_rate}")
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    if fmt not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {fmt!r}")


def generate_day(
    store: ObjectStore,
    day: str | date,
    *,
    customers: int = 2000,
    seed: int = 7,
    fraud_rate: float = 0.012,
    rows_per_file: int = 500_000,
    file_format: str = "csv",
    history_start: str | date | None = None,
) -> dict[str, Any]:
    """Land the transactions of `day` and the chargebacks reported on `day`.

    Same arguments, same bytes. `customers=0` lands an empty day (`_SUCCESS` listing no files).
    Chargebacks are only reported for transactions on or after `history_start`, the first day
    this producer delivered, so every chargeback refers to a landed transaction. By default it
    is the earliest day already landed in `store` (or `day` in an empty store), which keeps a
    history extended day by day consistent with one generated in a single range.
    """
    _check_args(customers, seed, fraud_rate, rows_per_file, file_format)
    day = parse_day(day)
    if history_start is None:
        first_day = min(day, _first_landed_day(store) or day)
    else:
        first_day = parse_day(history_start)
        if day < first_day:
            raise ValueError(
                f"day {day} is before history_start {first_day}: pass an earlier history_start "
                "or none (then it is the earliest day already landed)"
            )
    began = time.monotonic()
    pop = population(customers, seed)
    plan = day_plan(pop, seed, fraud_rate, day)
    with tempfile.TemporaryDirectory(prefix="generate-") as tmp:
        tx_keys = _land_transactions(
            store, day, pop, plan, seed, rows_per_file, file_format, Path(tmp)
        )
        chargebacks = chargeback_rows(customers, seed, fraud_rate, day, first_day)
        cb_keys = _land(store, "chargebacks", day, [chargebacks], file_format, Path(tmp))
    seconds = time.monotonic() - began
    summary = {
        "day": day.isoformat(),
        "transactions": int(plan.row_end[-1]) if customers else 0,
        "fraud_transactions": len(plan.fraud.counter),
        "chargebacks": chargebacks.num_rows,
        "history_start": first_day.isoformat(),
        "keys": tx_keys + cb_keys,
        "seconds": round(seconds, 3),
    }
    log.info(
        "generated dt=%s: %d transactions (%d fraud), %d chargebacks in %.1fs",
        day,
        summary["transactions"],
        summary["fraud_transactions"],
        summary["chargebacks"],
        seconds,
    )
    return summary


def generate_range(
    store: ObjectStore, start: str | date, end: str | date, **kw: Any
) -> list[dict[str, Any]]:
    """Land every day from `start` to `end` inclusive, oldest first (see `generate_day`)."""
    start, end = parse_day(start), parse_day(end)
    days = day_range(start, end)
    began = time.monotonic()
    summaries = []
    for i, day in enumerate(days, 1):
        summaries.append(generate_day(store, day, **kw))
        elapsed = time.monotonic() - began
        log.info(
            "generated %d/%d days (%.1fs elapsed, ~%.0fs left)",
            i,
            len(days),
            elapsed,
            elapsed / i * (len(days) - i),
        )
    return summaries
