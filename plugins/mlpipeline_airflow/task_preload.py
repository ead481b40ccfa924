"""The libraries the pipeline's tasks import, loaded once into the process task processes are
forked from, so each airflow task does not import them again.

Every task runs in a process of its own, forked by its worker (Airflow's supervisor). Without
this, each one imported what its stage needs: Great Expectations about 7 s of CPU, scikit-learn
and MLflow about 4 s each, dbt 3 s on this project's two-core reference machine, which made up
most of a task's cost beyond its work. Loaded here, a forked task finds them in memory
(copy-on-write), as the library does when it runs the stages one after another in one process.

Wired as the scheduler's `[scheduler] mp_forkserver_preload` for the LocalExecutor (with
`mp_start_method = forkserver`; mlpipeline.devtools.local_airflow) and as Celery's `imports` on
the stack's workers (mlpipeline_airflow.celery_config). Only importing, no I/O: no connection or
thread is opened before the fork.
"""

from __future__ import annotations

import importlib
import logging
import warnings

MODULES = (
    # First: importing skops.io looks up each of SciPy's functions in every loaded module (about
    # 1.3 s over scikit-learn's modules, 4 s over Airflow's and the rest, each lookup on an
    # Airflow module warning of a deprecated name). The fork server imports it before Airflow
    # (mlpipeline.devtools.local_airflow): its preload took 31.9 s instead of 35.5.
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "skops.io",
    # What a task process runs before its stage: the task runner, the DAG file's imports.
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.standard.operators.python",
    "cosmos.operators.local",
    # The stages' other libraries.
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "great_expectations",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "pandas",
    "pyarrow.parquet",
    "duckdb",
    "deltalake",
    "boto3",
    "redis",
)

# Importing GX logs about a hundred INFO lines (functions it cannot register for its docs),
# which would open the scheduler's or worker's output; warnings still show, but for the
# deprecated Airflow names skops' lookups touch where Airflow is loaded first (a Celery worker).
# The level disabled before is put back, whatever it was.
_disabled = logging.root.manager.disable
logging.disable(max(_disabled, logging.INFO))
try:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="skops")
        for _module in MODULES:
            importlib.import_module(_module)
finally:
    logging.disable(_disabled)
