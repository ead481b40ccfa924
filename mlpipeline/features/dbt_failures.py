"""What a failed dbt node reports: its status, failing row count and first failing rows, so
on-call sees what broke without opening dbt.log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpipeline.core.config import Settings

FAILED_STATUSES = {"error", "fail", "runtime error"}


# Failing rows shown per failing test: a few rows, a few columns, short values (the offending
# values and the keys that locate them, not whole records).
SAMPLE_ROWS = 5


SAMPLE_COLUMNS = 6


SAMPLE_WIDTH = 60


KEY_COLUMNS = (
    "transaction_id",
    "customer_id",
    "cutoff_date",
    "snapshot_cutoff",
    "training_cutoff",
    "dt",
)


@dataclass(frozen=True)
class NodeResult:
    """Outcome of one dbt node (model or test) in a build; `sample` holds the first failing rows
    of a failed test, one text line each."""

    name: str
    resource_type: str
    status: str
    failing_rows: int | None
    message: str
    sample: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{self.resource_type} {self.name}: {self.status}"
        if self.failing_rows:
            text += f", {self.failing_rows} failing rows"
        if self.message and (self.resource_type != "test" or self.status == "error"):
            text += f": {self.message}"
        for line in self.sample:
            text += f"\n      {line}"
        return text


class DbtBuildError(RuntimeError):
    """`dbt build` failed; `failures` lists the failing models and tests."""

    def __init__(self, message: str, failures: list[NodeResult]) -> None:
        super().__init__(message)
        self.failures = failures


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SAMPLE_WIDTH else text[: SAMPLE_WIDTH - 3] + "..."


def failing_rows(
    settings: Settings, sql: str, column: str | None = None, dev: bool = False
) -> tuple[str, ...]:
    """The first rows a failed test's query returns, as `row i: col=value, ...` lines.

    The test's column comes first, then the keys that locate a row, then other columns up to
    SAMPLE_COLUMNS. Reads the warehouse read-only (with `dev`, the analysts' lake beside it); a
    sample that cannot be read says why instead of hiding the test's own failure.
    """
    from mlpipeline.warehouse import connect
    from mlpipeline.warehouse.dev_db import connect_dev

    query = f"SELECT * FROM ({sql.strip().rstrip(';')}) AS failing LIMIT {SAMPLE_ROWS}"
    try:
        with connect_dev(settings) if dev else connect(settings, read_only=True) as con:
            cursor = con.execute(query)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
    except Exception as exc:  # noqa: BLE001 - the sample is a courtesy; the failure is reported
        return (f"(failing rows not shown: {type(exc).__name__}: {str(exc)[:200]})",)
    first = [c for c in (column, *KEY_COLUMNS) if c and c in names]
    shown = list(dict.fromkeys([*first, *names]))[:SAMPLE_COLUMNS]
    positions = [names.index(c) for c in shown]
    return tuple(
        f"row {i}: " + ", ".join(f"{names[p]}={_short(row[p])}" for p in positions)
        for i, row in enumerate(rows, start=1)
    )


def node_results(result: Any, settings: Settings, *, dev: bool) -> list[NodeResult]:
    nodes = []
    for item in getattr(result, "results", None) or []:
        node = item.node
        # Tests and unit tests have no relation; a failed unit test's message holds its diff.
        is_test = node.resource_type in ("test", "unit_test")
        name = node.name if is_test else f"{node.schema}.{node.alias}"
        status = getattr(item.status, "value", str(item.status))
        sample: tuple[str, ...] = ()
        if node.resource_type == "test" and status == "fail":
            column = getattr(node, "column_name", None)
            sample = failing_rows(settings, node.compiled_code, column, dev)
        nodes.append(
            NodeResult(
                name, str(node.resource_type), status, item.failures, item.message or "", sample
            )
        )
    return nodes
