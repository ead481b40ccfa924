"""Celery settings of the stack's Airflow workers (`[celery] celery_config_options`): Airflow's
defaults, plus the tasks' libraries imported by the worker before it forks its pool, so each
task process finds them in memory (mlpipeline_airflow.task_preload)."""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), "mlpipeline_airflow.task_preload"),
}
