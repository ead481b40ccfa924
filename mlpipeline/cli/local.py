"""Laptop commands: land demo data, catch up, the demo, its summary, the local Airflow and UIs."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.days import parse_day


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def cmd_generate(args: argparse.Namespace) -> None:
    from mlpipeline.core.objectstore import from_settings
    from mlpipeline.devtools.generate import generate_range

    conf = pipeline_conf()["generator"]
    generate_range(
        from_settings(),
        parse_day(args.start),
        parse_day(args.end),
        customers=args.customers or conf["customers"],
        seed=conf["seed"] if args.seed is None else args.seed,
        fraud_rate=conf["fraud_rate"],
        file_format=args.format,
    )


def cmd_catchup(args: argparse.Namespace) -> None:
    from mlpipeline.pipeline.catchup import catchup

    catchup(parse_day(args.start), parse_day(args.end))


def cmd_demo(args: argparse.Namespace) -> None:
    from mlpipeline.devtools.demo import run_demo

    end = parse_day(args.end) if args.end else _yesterday()
    sys.exit(run_demo(end, history_days=args.days, customers=args.customers))


def cmd_summary(args: argparse.Namespace) -> None:
    from mlpipeline.devtools.summary import summarize

    print(json.dumps(summarize(parse_day(args.day), Settings.from_env()), indent=2, default=str))


# `mlpipeline airflow` commands that run tasks, which need the online store; only these start
# the local Redis (when REDIS_URL is unset), not `--help`, `dags list` and the like.
RUNS_TASKS = (("standalone",), ("scheduler",), ("dags", "test"), ("tasks", "test"), ("celery",))


def cmd_airflow(args: argparse.Namespace) -> None:
    from mlpipeline.devtools import local_airflow
    from mlpipeline.devtools.localredis import resolve_url

    settings = Settings.from_env()
    runs_tasks = any(tuple(args.args[: len(prefix)]) == prefix for prefix in RUNS_TASKS)
    extra = {"REDIS_URL": resolve_url(settings)} if runs_tasks else {}
    env = local_airflow.airflow_env(settings, extra)
    if not (settings.data_dir / "airflow" / "airflow.db").exists():
        local_airflow.init(env)
    sys.exit(local_airflow.run(args.args, env, check=False))


def cmd_ui(args: argparse.Namespace) -> None:
    from mlpipeline.devtools import local_ui

    local_ui.serve(
        Settings.from_env(), airflow_port=args.airflow_port, mlflow_port=args.mlflow_port
    )


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
    p = sub.add_parser("generate", help="land demo transactions and chargebacks for a day range")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--customers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("catchup", help="ingest and promote a day range outside Airflow, then build")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.set_defaults(func=cmd_catchup)

    p = sub.add_parser("demo", help="generate history, catch up, run fraud_nightly, summarize")
    p.add_argument("--end", help="the nightly run's day D (default: yesterday, UTC)")
    p.add_argument("--days", type=int, default=pipeline_conf()["demo"]["history_days"])
    p.add_argument("--customers", type=int, default=pipeline_conf()["generator"]["customers"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("summary", help="what a day's run left in DuckDB, MLflow and Redis")
    p.add_argument("--day", required=True)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "ui", help="start the Airflow UI (with scheduler) and the MLflow UI; Ctrl-C stops them"
    )
    p.add_argument("--airflow-port", type=int, default=8080)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "airflow", help="run an airflow command on this checkout's local Airflow (e.g. standalone)"
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_airflow)
