"""airflow-init: the stack's one-shot setup, the same steps as the laptop's, plus its connections.

`mlpipeline.devtools.local_airflow.init` creates the warehouse (the only place a deployment
makes one),
migrates the metadata DB, creates the `warehouse` pool every warehouse task runs in (16 slots on
the stack's PostgreSQL catalog), and checks the dbt manifest the nightly's Cosmos task group
is rendered from (`mlpipeline dbt-manifest`: built into the image, re-parsed only if the dbt
code changed). Then the analysts' read-only warehouse role is granted (`warehouse_reader`, its
password from `WAREHOUSE_READER_PASSWORD`) and the SMTP connection alert emails go through is
created from `SMTP_*` in `.env` (when `SMTP_HOST` is set). Every step is idempotent, so
`docker compose up` runs it on each start and picks up changed settings.

The pipeline itself reads its endpoints and credentials from the environment (REDIS_URL, AWS_*,
MLFLOW_TRACKING_URI, ...); Slack and webhook alert URLs become connections at alert time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mlpipeline.devtools import local_airflow
from mlpipeline.warehouse import warehouse_reader

log = logging.getLogger("airflow-init")

SMTPS_PORT = 465


def smtp_connection(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The SMTP server as an Airflow `smtp` connection: implicit TLS on port 465, STARTTLS on
    any other port; None without SMTP_HOST."""
    host = env.get("SMTP_HOST")
    if not host:
        return None
    port = int(env.get("SMTP_PORT") or 587)
    extra: dict[str, Any] = {"disable_ssl": port != SMTPS_PORT}
    if env.get("SMTP_MAIL_FROM"):
        extra["from_email"] = env["SMTP_MAIL_FROM"]
    return {
        "conn_type": "smtp",
        "host": host,
        "port": port,
        "login": env.get("SMTP_USER") or None,
        "password": env.get("SMTP_PASSWORD") or None,
        "extra": extra,
    }


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    env = dict(os.environ)
    local_airflow.init(env)
    if env.get("WAREHOUSE_READER_PASSWORD"):
        warehouse_reader.grant(env["WAREHOUSE_CATALOG"], env["WAREHOUSE_READER_PASSWORD"])
    else:
        log.info("WAREHOUSE_READER_PASSWORD is not set: no read-only warehouse role for analysts")
    smtp = smtp_connection(env)
    conn_id = env.get("MLPIPELINE_ALERT_SMTP_CONN_ID") or "smtp_default"
    if smtp is None:
        log.info("SMTP_HOST is not set: no %s connection (alert emails need one)", conn_id)
        return
    local_airflow.set_connection(conn_id, smtp, env)
    log.info("connection %s: smtp://%s:%s", conn_id, smtp["host"], smtp["port"])


if __name__ == "__main__":
    main()
