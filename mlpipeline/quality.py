"""Great Expectations quality gates, run on DataFrames with GX 1.x.

Suites are version-controlled JSON files in `mlpipeline/conf/expectations/` that analysts read
and edit; thresholds inside them are `{"$PARAMETER": name}` references filled from
`conf/pipeline.yaml` and from the run (the day, declared row counts). An expectation with
severity `warning` is logged and recorded but does not fail the gate: GX itself counts any
failed expectation as a failed suite, so the gate decides on critical failures only.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from mlpipeline.config import CONF_DIR
from mlpipeline.meta import ensure_meta, utcnow

log = logging.getLogger(__name__)

SUITES_DIR = CONF_DIR / "expectations"
_SAMPLE_VALUES = 5


class QualityGateFailed(RuntimeError):
    """A suite's critical expectations failed; the message lists them."""

    def __init__(self, outcome: CheckOutcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.describe())


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: str


@dataclass
class CheckOutcome:
    suite: str
    subject: str
    rows: int
    results: list[ExpectationOutcome] = field(default_factory=list)

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
        head = (
            f"suite '{self.suite}' on {self.subject} ({self.rows} rows): "
            f"{len(self.results) - len(self.failures) - len(self.warnings)} passed, "
            f"{len(self.failures)} failed, {len(self.warnings)} warnings"
        )
        lines = [head]
        for label, items in (("FAILED", self.failures), ("WARNING", self.warnings)):
            lines += [
                f"  {label} {r.expectation}"
                + (f" on column {r.column}" if r.column else "")
                + f": {r.observed}"
                for r in items
            ]
        return "\n".join(lines)


def load_suite_definition(name: str) -> dict[str, Any]:
    path = SUITES_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite {name!r}: expected {path}")
    return json.loads(path.read_text())


def _observed(result: dict[str, Any]) -> str:
    """Observed value plus a few offending values, never whole records."""
    parts = []
    if "observed_value" in result:
        parts.append(f"observed {result['observed_value']!r}")
    if result.get("unexpected_count"):
        parts.append(
            f"{result['unexpected_count']} unexpected "
            f"({result.get('unexpected_percent', 0):.2f}%), e.g. "
            f"{result.get('partial_unexpected_list', [])[:_SAMPLE_VALUES]!r} at rows "
            f"{result.get('partial_unexpected_index_list', [])[:_SAMPLE_VALUES]!r}"
        )
    return "; ".join(parts) or "no details"


def _context():  # noqa: ANN202 - GX's context type is internal
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    return context


def run_suite(
    name: str, df: pd.DataFrame, *, subject: str, parameters: dict[str, Any] | None = None
) -> CheckOutcome:
    """Validate a DataFrame against a suite file; never raises for failed expectations."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    definition = load_suite_definition(name)
    context = _context()
    suite = gx.ExpectationSuite(name=definition["name"])
    for item in definition["expectations"]:
        config = ExpectationConfiguration(
            type=item["type"],
            kwargs=item.get("kwargs", {}),
            meta=item.get("meta", {}),
            severity=item.get("severity", "critical"),
        )
        suite.add_expectation(config.to_domain_obj())
    suite = context.suites.add(suite)
    batch_def = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation", data=batch_def, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": df},
        expectation_parameters=parameters or {},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": _SAMPLE_VALUES},
    )
    outcome = CheckOutcome(suite=name, subject=subject, rows=len(df))
    for item in result.results:
        config = item.expectation_config
        outcome.results.append(
            ExpectationOutcome(
                expectation=config.type,
                column=config.kwargs.get("column"),
                severity=str(getattr(config.severity, "value", config.severity)).lower(),
                success=bool(item.success),
                observed=_observed(item.result or {}) if not item.success else "ok",
            )
        )
    log.log(logging.INFO if outcome.success else logging.ERROR, "%s", outcome.describe())
    return outcome


def record(con: duckdb.DuckDBPyConnection, outcome: CheckOutcome, *, run_id: str | None) -> None:
    """Store every expectation's result so a reader can see which checks a subject passed."""
    ensure_meta(con)
    now = utcnow()
    con.executemany(
        "INSERT INTO meta.validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                outcome.subject,
                outcome.suite,
                r.expectation,
                r.column,
                r.severity,
                r.success,
                r.observed,
                run_id,
                now,
            )
            for r in outcome.results
        ],
    )
