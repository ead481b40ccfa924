"""The expectation suites: JSON files analysts read and edit, their parameters, and which of
their expectations a frame can be judged by.

Suites live in `mlpipeline/conf/expectations/` (or the folder named by
`MLPIPELINE_EXPECTATIONS_DIR`, for a deployment that keeps its own). Thresholds inside them are
`{"$PARAMETER": name}` references that the gates fill from `conf/pipeline.yaml` and from the run.

Two keys beside GX's own decide whether an expectation is evaluated at all: `min_rows` (an
integer or a parameter reference; below it a distribution check says nothing, and an empty
day has no mean) and any referenced parameter that is None (e.g. no recent history to compare
with). Skipped expectations are logged, not recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipeline.core.config import Settings, pipeline_conf

if TYPE_CHECKING:
    import great_expectations as gx

SUITES_ENV = "MLPIPELINE_EXPECTATIONS_DIR"


def quality_conf() -> dict[str, Any]:
    """The `quality:` section of conf/pipeline.yaml (thresholds the suites reference)."""
    return pipeline_conf()["quality"]


def suites_dir() -> Path:
    return Settings.from_env().expectations_dir


def load_suite_definition(name: str) -> dict[str, Any]:
    path = suites_dir() / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no expectation suite {name!r}: expected {path} (the folder comes from "
            f"{SUITES_ENV} when set, else mlpipeline/conf/expectations)"
        )
    return json.loads(path.read_text())


def suite_columns(name: str) -> set[str]:
    """Columns a suite reads: the gates load only these from large revisions."""
    columns: set[str] = set()
    for item in load_suite_definition(name)["expectations"]:
        kwargs = item.get("kwargs", {})
        columns.update(kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs)
    return columns


def _parameter_refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return [value["$PARAMETER"]]
        return [ref for v in value.values() for ref in _parameter_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _parameter_refs(v)]
    return []


def _check_name(item: dict[str, Any]) -> str:
    check = item.get("meta", {}).get("notes", "")
    column = item.get("kwargs", {}).get("column")
    return check or (f"{item['type']} on {column}" if column else item["type"])


def skip_reason(item: dict[str, Any], rows: int, parameters: dict[str, Any]) -> str | None:
    """Why an expectation cannot be evaluated on this frame, or None to evaluate it."""
    name = _check_name(item)
    refs = _parameter_refs(item.get("kwargs", {}))
    unknown = [r for r in refs if r not in parameters]
    if unknown:
        raise KeyError(
            f"expectation {name!r} references parameters {unknown} the gate does not provide; "
            f"provided: {sorted(parameters)}"
        )
    missing = [r for r in refs if parameters[r] is None]
    if missing:
        return f"{name}: no value for {missing} (e.g. no recent history to compare with)"
    min_rows = item.get("min_rows", 0)
    if isinstance(min_rows, dict):
        min_rows = parameters[min_rows["$PARAMETER"]]
    if rows < int(min_rows):
        return f"{name}: needs at least {min_rows} rows, the data has {rows}"
    return None


def gx_suite(name: str, items: list[dict[str, Any]]) -> gx.ExpectationSuite:
    """The GX suite of the expectations to evaluate (our own keys, like `min_rows`, left out)."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = [
        ExpectationConfiguration(
            type=item["type"],
            kwargs=item.get("kwargs", {}),
            meta=item.get("meta", {}),
            severity=item.get("severity", "critical"),
        ).to_domain_obj()
        for item in items
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)
