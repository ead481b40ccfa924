"""Feature stages: the dbt build of the day and the snapshot's checks."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from mlpipeline.pipeline.nightly.common import configured, enforced, object_store


def build_features(day: str, *, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build` of the feature project for processing day D (prod target)."""
    from mlpipeline.features import transform

    return transform.build(
        date.fromisoformat(day), settings=configured(), full_refresh=full_refresh
    )


def dbt_tasks() -> dict[str, Any]:
    """What the DAG's Cosmos task group needs: the dbt project, the manifest its tasks are
    rendered from, the profile, and the environment dbt runs with (the prod target's warehouse).

    Called at every parse, so it opens no file: Cosmos reads the manifest setup wrote. Whether
    that manifest still matches the dbt code is checked where it matters, not here (hashing the
    project on every parse): setup re-parses a stale one (`transform.ensure_manifest`) and each
    dbt task warns in its log before it runs (`transform.warn_if_manifest_stale`)."""
    from mlpipeline.features import dbt_project, transform

    settings = configured()
    project = settings.dbt_project_dir
    manifest = dbt_project.manifest_path(project)
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} is missing: the nightly's dbt tasks are rendered from it. Build it with "
            "`mlpipeline dbt-manifest` (setup does: mlpipeline.devtools.local_airflow.init)"
        )
    return {
        "project_dir": str(project),
        "manifest": str(manifest),
        "profiles_yml": str(project / "profiles.yml"),
        # What a worker's own environment lacks: rendered into the tasks (and shown in the UI),
        # so a catalog's password set in the deployment's environment is never copied here.
        "env": {
            **{k: v for k, v in transform.prod_env(settings).items() if k not in os.environ},
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
        },
    }


def check_snapshot(day: str, run_id: str) -> dict[str, Any]:
    """GX gate on cutoff D's snapshot: it gates export, push, training and scoring."""
    from mlpipeline import quality
    from mlpipeline.features import dbt_project
    from mlpipeline.ingest import gates
    from mlpipeline.warehouse import connect

    settings, spec = configured(), dbt_project.online_spec()
    with connect(settings) as con:
        outcome = enforced(
            con,
            gates.snapshot_gate(
                con,
                date.fromisoformat(day),
                feature_columns=[f.name for f in spec.features],
                ttl_days=spec.ttl_days,
                docs=quality.DataDocs.from_settings(settings, object_store()),
                run_name=run_id,
            ),
            run_id,
        )
    return {
        "suite": outcome.suite,
        "rows": outcome.rows,
        "warnings": len(outcome.warnings),
        "data_docs": outcome.page.key if outcome.page else None,
    }
