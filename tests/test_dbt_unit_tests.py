"""The dbt unit tests (`unit_tests:` in the project's YAML) run in every `dbt build` the pipeline
makes, and they stop it when a time rule breaks.

On a copy of dbt_project/ the cutoff macro ends a day an hour early; the build of the first
cutoffs must fail on the unit tests of int_snapshot_cutoffs, with dbt's row diff in the error,
before any model is built.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.features import transform
from mlpipeline.warehouse import connect
from tests.dbt_fixtures import load_raw, txn

pytestmark = pytest.mark.integration

CUTOFF_RULE = "dbt.dateadd('day', 1, 'cast(' ~ day ~ ' as timestamp)')"


def test_a_broken_time_rule_fails_the_build_on_its_unit_tests(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(
        Settings.from_env().dbt_project_dir,
        project,
        ignore=shutil.ignore_patterns("target", "logs"),
    )
    macros = project / "macros" / "pipeline_time.sql"
    assert CUTOFF_RULE in macros.read_text(), "pipeline_time.sql changed shape"
    macros.write_text(
        macros.read_text().replace(
            CUTOFF_RULE, "dbt.dateadd('hour', 23, 'cast(' ~ day ~ ' as timestamp)')"
        )
    )
    settings = Settings.under(tmp_path / "data").model_copy(update={"dbt_project_dir": project})
    warehouse.create(settings)
    with connect(settings) as con:
        load_raw(con, "transactions", [txn("T1", "C1", "2026-01-02 10:00:00", "20.00")])

    with pytest.raises(transform.DbtBuildError) as caught:
        transform.build(
            "2026-01-02", settings=settings, select=["stg_transactions", "int_snapshot_cutoffs"]
        )
    failed = [f for f in caught.value.failures if f.status == "fail"]
    assert failed and {f.resource_type for f in failed} == {"unit_test"}
    assert {f.name for f in failed} <= {
        "full_build_times_every_cutoff_from_the_first_raw_day",
        "incremental_build_times_the_processing_day_alone",
    }
    message = str(caught.value)
    assert "actual differs from expected" in message
    # dbt's diff shows the cutoff_ts the broken rule gave next to the expected one.
    diffs = ("2028-02-28 00:00:00→2028-02-27 23:00:00", "2027-01-01 00:00:00→2026-12-31 23:00:00")
    assert any(diff in message for diff in diffs), message
