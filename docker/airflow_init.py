"""airflow-init: the stack's one-shot setup, the same steps as the laptop's.

`mlpipeline.local_airflow.init` migrates the metadata DB, creates the single-slot `warehouse`
pool every DuckDB opener runs in, and checks the dbt manifest the nightly's Cosmos task group
is rendered from (`mlpipeline dbt-manifest`: built into the image, re-parsed only if the dbt
code changed). Every step is idempotent, so `docker compose up` runs it on each start.

No Airflow connection is created: the pipeline reads its endpoints and credentials from the
environment (REDIS_URL, AWS_*, MLFLOW_TRACKING_URI, ...), never from Airflow connections.
"""

from __future__ import annotations

import logging
import os

from mlpipeline import local_airflow


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    local_airflow.init(dict(os.environ))


if __name__ == "__main__":
    main()
