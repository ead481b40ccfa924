"""What a suite run found, in the terms the gates, logs and alerts use.

Severity `warning` is logged and recorded but does not fail the gate: GX itself counts any
failed expectation as a failed suite, so the gate decides on critical failures only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlpipeline.quality.docs import DocsPage

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

SAMPLE_VALUES = 5  # offending values a result keeps and a message shows
_KWARGS_NOT_SHOWN = {"batch_id", "column", "column_A", "column_B", "result_format"}


class QualityGateFailed(RuntimeError):
    """A suite's critical expectations failed; the message lists them."""

    def __init__(self, outcome: CheckOutcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.describe())


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    check: str
    column: str | None
    severity: str
    success: bool
    observed: str
    expected: str

    @classmethod
    def from_gx(cls, item: ExpectationValidationResult) -> ExpectationOutcome:
        config = item.expectation_config
        return cls(
            expectation=config.type,
            check=str((config.meta or {}).get("notes", "")),
            column=config.kwargs.get("column") or config.kwargs.get("column_A"),
            severity=str(getattr(config.severity, "value", config.severity)).lower(),
            success=bool(item.success),
            observed=_observed(item.result or {}),
            expected=_expected(config.kwargs),
        )

    @property
    def name(self) -> str:
        """What it checks in words (the suite's meta.notes), else its type and column."""
        return self.check or (
            f"{self.expectation} on {self.column}" if self.column else self.expectation
        )

    @property
    def label(self) -> str:
        """What `meta.validation_results.expectation` holds: the GX type and what it checks."""
        return f"{self.expectation}: {self.check}" if self.check else self.expectation


@dataclass
class CheckOutcome:
    suite: str
    subject: str
    rows: int
    results: list[ExpectationOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    page: DocsPage | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity != "critical"]

    @property
    def success(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        passed = len(self.results) - len(self.failures) - len(self.warnings)
        lines = [
            f"suite '{self.suite}' on {self.subject} ({self.rows} rows): {passed} passed, "
            f"{len(self.failures)} failed, {len(self.warnings)} warnings, "
            f"{len(self.skipped)} not evaluated"
        ]
        for label, items in (("FAILED", self.failures), ("WARNING", self.warnings)):
            lines += [
                f"  {label} {r.label}"
                + (f" [column {r.column}]" if r.column else "")
                + f": {r.observed}"
                + (f"; expected {r.expected}" if r.expected else "")
                for r in items
            ]
        lines += [f"  not evaluated: {reason}" for reason in self.skipped]
        if self.page:
            lines.append(f"  Data Docs: {self.page.describe()}")
        return "\n".join(lines)


def _observed(result: dict[str, Any]) -> str:
    """Observed value plus a few offending values by position, never whole records."""
    parts = []
    if "observed_value" in result:
        parts.append(f"observed {_plain(result['observed_value'])!r}")
    if "unexpected_count" in result:
        count = result["unexpected_count"]
        text = f"{count} unexpected of {result.get('element_count', '?')}"
        if count:
            values = [_plain(v) for v in result.get("partial_unexpected_list", [])]
            rows = result.get("partial_unexpected_index_list", [])
            text += (
                f" ({result.get('unexpected_percent', 0):.2f}%), e.g. "
                f"{values[:SAMPLE_VALUES]!r} at rows {rows[:SAMPLE_VALUES]!r}"
            )
        parts.append(text)
    return "; ".join(parts) or "no details"


def _plain(value: Any) -> Any:
    """numpy / pandas scalars as plain Python values, so messages read naturally."""
    if isinstance(value, pd.Timestamp):
        return str(value)
    return value.item() if hasattr(value, "item") else value


def _expected(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in _KWARGS_NOT_SHOWN and v is not None}
    return ", ".join(f"{k}={_plain(v)!r}" for k, v in shown.items())
