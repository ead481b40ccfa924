"""One suite run: a GX Checkpoint validating a DataFrame, with Data Docs as its action.

Each run gets its own ephemeral context holding the suite, the frame as a pandas asset, one
validation definition and the Checkpoint; with a Data Docs site, the Checkpoint's
`UpdateDataDocsAction` renders the run's page and the index, which are then published.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mlpipeline.quality.context import ephemeral_context
from mlpipeline.quality.docs import DataDocs
from mlpipeline.quality.outcome import SAMPLE_VALUES, CheckOutcome, ExpectationOutcome
from mlpipeline.quality.suites import gx_suite, load_suite_definition, skip_reason

log = logging.getLogger(__name__)

_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_VALUES}


def _run_name(value: str) -> str:
    """A run name that is safe as a path segment in every store (Airflow run ids hold ':+')."""
    return re.sub(r"[^A-Za-z0-9._@=-]", "_", value)


def run_suite(
    name: str,
    df: pd.DataFrame,
    *,
    subject: str,
    parameters: dict[str, Any] | None = None,
    docs: DataDocs | None = None,
    run_name: str | None = None,
) -> CheckOutcome:
    """Validate a DataFrame against a suite file; never raises for failed expectations.

    With `docs`, the result is kept in the Data Docs site and the run's page is built and
    published; `outcome.page` says where.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    parameters = parameters or {}
    definition = load_suite_definition(name)
    outcome = CheckOutcome(suite=name, subject=subject, rows=len(df))
    evaluated = []
    for item in definition["expectations"]:
        reason = skip_reason(item, len(df), parameters)
        if reason:
            outcome.skipped.append(reason)
        else:
            evaluated.append(item)

    if docs is not None:
        docs.fetch_published()
    started_ns = time.time_ns()
    context = ephemeral_context(docs.context_config() if docs else None)
    suite = context.suites.add(gx_suite(definition["name"], evaluated))
    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(_run_name(subject))
        .add_batch_definition_whole_dataframe("whole")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}-checkpoint",
            validation_definitions=[validation],
            actions=[docs.update_action()] if docs else [],
            result_format=_RESULT_FORMAT,
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": df},
        expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=_run_name(run_name or subject), run_time=datetime.now(UTC)),
    )
    ((result_id, validation_result),) = result.run_results.items()
    outcome.results = [ExpectationOutcome.from_gx(item) for item in validation_result.results]
    if docs is not None:
        outcome.page = docs.publish(context, result_id, started_ns)
    log.log(logging.INFO if outcome.success else logging.ERROR, "%s", outcome.describe())
    return outcome
