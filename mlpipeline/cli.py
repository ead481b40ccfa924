"""`mlpipeline` command line: demo data, catch-up, the demo run, and what operators inspect."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from mlpipeline.core.config import Settings, pipeline_conf
from mlpipeline.core.days import parse_day
from mlpipeline.ops.retention import KINDS as RETENTION_KINDS

if TYPE_CHECKING:
    from mlpipeline.online.store import RedisOnlineStore


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


def cmd_batches_change(args: argparse.Namespace) -> None:
    """release / discard a revision; a release then re-runs the days it affects, in order."""
    from mlpipeline.ingest import batches
    from mlpipeline.ops import backfill
    from mlpipeline.warehouse import connect

    change = batches.release if args.action == "release" else batches.discard
    with connect() as con:
        try:
            result = change(con, args.batch_id, args.revision, run_id=f"cli:{args.action}")
        except (LookupError, ValueError) as exc:
            sys.exit(f"mlpipeline batches {args.action}: {exc}")
    print(json.dumps(result, indent=2, default=str))
    if args.action == "release":
        print("\n".join(backfill.start_rerun(result["stale_days"])))


def cmd_batches_supersede(args: argparse.Namespace) -> None:
    """Correct a current revision: drop the rows breaking a rule, or replace it from a file."""
    from pathlib import Path

    from mlpipeline.core.objectstore import from_settings
    from mlpipeline.ingest import supersede
    from mlpipeline.ops import backfill
    from mlpipeline.warehouse import connect

    with connect() as con:
        try:
            result = supersede.supersede(
                con,
                from_settings(),
                args.batch_id,
                drop_rule=args.drop_rule,
                file=Path(args.file) if args.file else None,
                run_id="cli:supersede",
            )
        except (LookupError, ValueError, FileNotFoundError) as exc:
            sys.exit(f"mlpipeline batches supersede: {exc}")
    print(json.dumps(result, indent=2, default=str))
    if result["status"] == "quarantined":
        sys.exit(1)
    print("\n".join(backfill.start_rerun(result["stale_days"])))


def cmd_batches_stale(args: argparse.Namespace) -> None:
    """The stale days, and their re-run in order (through the API, or the commands to run)."""
    from mlpipeline.ingest import batches
    from mlpipeline.ops import backfill
    from mlpipeline.warehouse import connect

    with connect(read_only=True) as con:
        days = batches.stale_days(con)
    print(json.dumps({"stale_days": days}, default=str))
    if not days:
        return
    print("\n".join(backfill.start_rerun(days) if args.rerun else backfill.rerun_commands(days)))


def _show(con, title: str, sql: str, params: list, rows: int = 1000) -> None:  # noqa: ANN001
    """One titled table, every column and row shown in full (DuckDB's default display cuts
    wide tables and long results)."""
    from mlpipeline.warehouse import lake

    print(title)
    with lake.cursor(con) as cursor:
        cursor.sql(sql, params=params).show(max_width=100_000, max_rows=rows, max_col_width=200)


def cmd_batches(args: argparse.Namespace) -> None:
    from mlpipeline.warehouse import connect

    with connect(read_only=True) as con:
        if args.action == "list":
            _show(
                con,
                f"newest {args.limit} batch revisions (meta.batches)",
                "SELECT dt, batch_id, revision, status, rows_declared, rows_written, "
                "rows_rejected, updated_at FROM meta.batches "
                "ORDER BY dt DESC, batch_id, created_at DESC LIMIT ?",
                [args.limit],
                args.limit,
            )
            return
        batch = [args.batch_id]
        _show(
            con,
            f"revisions of {args.batch_id} (meta.batches)",
            "SELECT revision, status, dt, rows_declared, rows_read, rows_written, rows_rejected, "
            "error, object_prefix, created_at, updated_at FROM meta.batches WHERE batch_id = ? "
            "ORDER BY created_at",
            batch,
        )
        _show(
            con,
            "status changes (meta.batch_events)",
            "SELECT recorded_at, revision, status, detail, run_id FROM meta.batch_events "
            "WHERE batch_id = ? ORDER BY recorded_at",
            batch,
        )
        _show(
            con,
            "rejected rows, first 50 (meta.rejected_rows)",
            "SELECT revision, source_file, source_row, rule, detail FROM meta.rejected_rows "
            "WHERE batch_id = ? ORDER BY revision, source_file, source_row LIMIT 50",
            batch,
        )
        _show(
            con,
            "rows waiting for their transaction, first 50 (meta.pending_rows)",
            "SELECT revision, source_file, source_row, waits_for_transaction "
            "FROM meta.pending_rows WHERE batch_id = ? "
            "ORDER BY revision, source_file, source_row LIMIT 50",
            batch,
        )


def cmd_dbt_manifest(args: argparse.Namespace) -> None:
    from mlpipeline.features import transform

    print(transform.ensure_manifest())


def cmd_data_docs_assets(args: argparse.Namespace) -> None:
    from mlpipeline.quality import data_docs_assets

    print(data_docs_assets.download())


def cmd_duckdb_extensions(args: argparse.Namespace) -> None:
    from mlpipeline.warehouse import duckdb_extensions

    print(duckdb_extensions.install())


def cmd_warehouse_init(args: argparse.Namespace) -> None:
    from mlpipeline import warehouse

    print(warehouse.create())


def cmd_warehouse_migrate(args: argparse.Namespace) -> None:
    from mlpipeline.core.config import Settings
    from mlpipeline.warehouse.warehouse_migrate import WRITER, migrate

    counts = migrate(Settings.from_env(), writer=args.from_duckdb or WRITER)
    print(json.dumps({"tables": len(counts), "rows": sum(counts.values())} if counts else {}))


def cmd_warehouse_sql(args: argparse.Namespace) -> None:
    import duckdb

    from mlpipeline import warehouse

    try:
        warehouse.query_csv(args.sql, sys.stdout, dev=args.dev)
    except (duckdb.Error, ValueError, RuntimeError) as exc:
        print(f"warehouse sql: {exc}", file=sys.stderr)
        sys.exit(1)


def cmd_dev_db(args: argparse.Namespace) -> None:
    from mlpipeline.warehouse.dev_db import create_dev

    print(create_dev())


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


def _online_settings() -> Settings:
    """The configured settings, pointed at the local run's Redis when REDIS_URL is unset."""
    from mlpipeline.devtools.localredis import local_settings

    return local_settings(Settings.from_env())


def _online_store() -> RedisOnlineStore:
    from mlpipeline.online.store import RedisOnlineStore

    return RedisOnlineStore.from_settings(_online_settings())


def cmd_online_get(args: argparse.Namespace) -> None:
    read = _online_store().read([args.entity])
    print(json.dumps(read.rows[0], indent=2, default=str))
    if not read.known[0]:
        # The defaults are what the model gets for an unknown customer; a script must see it.
        sys.exit(
            f"{args.entity!r} is not in the current snapshot (export {read.export_id}, cutoff "
            f"{read.cutoff}): the values above are the declared defaults"
        )


def cmd_online_rollback(args: argparse.Namespace) -> None:
    from mlpipeline.online import OnlineStoreError

    try:
        result = _online_store().rollback(reason=args.reason, verify=not args.skip_verify)
    except OnlineStoreError as exc:
        sys.exit(f"online rollback not done: {exc}")
    print(json.dumps(result, indent=2, default=str))


def cmd_online_release(args: argparse.Namespace) -> None:
    result = _online_store().release(switch_pending=args.switch_pending, reason=args.reason)
    print(json.dumps(result, indent=2, default=str))


def cmd_online_status(args: argparse.Namespace) -> None:
    print(json.dumps(_online_store().status(), indent=2))


def cmd_serve(args: argparse.Namespace) -> None:
    from mlpipeline.scoring.serve import serve

    serve(
        args.host,
        args.port,
        settings=_online_settings(),
        model_refresh_seconds=args.model_refresh_seconds,
    )


def cmd_model_rollback(args: argparse.Namespace) -> None:
    """Restore the previous champion and pin it: the nightly stops promoting until release."""
    from mlpipeline.training import model_registry

    try:
        result = model_registry.rollback_champion(
            Settings.from_env().mlflow_tracking_uri, reason=args.reason, by=args.by
        )
    except model_registry.RollbackError as exc:
        sys.exit(f"mlpipeline model rollback: {exc}")
    print(json.dumps(result, indent=2))


def cmd_model_release(args: argparse.Namespace) -> None:
    """Remove the rollback pin; the champion stays until a nightly promotes a better model."""
    from mlpipeline.training import model_registry

    result = model_registry.release_pin(Settings.from_env().mlflow_tracking_uri, by=args.by)
    print(json.dumps(result, indent=2))


def cmd_retention(args: argparse.Namespace) -> None:
    """Delete old artifacts by the ages in pipeline.yaml `retention:`; never what is in use."""
    from mlpipeline.ops import retention

    reports, failed = [], []
    for kind in [args.only] if args.only else retention.KINDS:
        try:
            reports.append(retention.run(kind, dry_run=args.dry_run).to_dict())
        except Exception as exc:  # one kind failing must not stop the others
            logging.getLogger(__name__).exception("retention %s failed", kind)
            reports.append({"kind": kind, "error": str(exc)})
            failed.append(kind)
    print(json.dumps(reports, indent=2, default=str))
    if failed:
        sys.exit(f"mlpipeline retention: {', '.join(failed)} failed (see the log above)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("batches", help="inspect the batch registry")
    bsub = p.add_subparsers(dest="action", required=True)
    bl = bsub.add_parser("list")
    bl.add_argument("--limit", type=int, default=30)
    bs = bsub.add_parser("show")
    bs.add_argument("batch_id")
    p.set_defaults(func=cmd_batches)
    sp = bsub.add_parser(
        "supersede",
        help="correct a current revision: a new revision without the rows breaking a rule "
        "(undeclared_merchant_category, undeclared_channel, undeclared_reason_code) or from a file",
    )
    sp.add_argument("batch_id")
    how = sp.add_mutually_exclusive_group(required=True)
    how.add_argument("--drop-rule", help="drop the rows breaking this rule")
    how.add_argument("--file", help="a corrected CSV or Parquet file with the dataset's columns")
    sp.set_defaults(func=cmd_batches_supersede)
    st = bsub.add_parser("stale", help="list the stale days and how to re-run them in order")
    st.add_argument("--rerun", action="store_true", help="start the re-run (needs AIRFLOW_API_URL)")
    st.set_defaults(func=cmd_batches_stale)
    for action, text in (
        ("release", "make a quarantined revision current and re-run the days it affects"),
        ("discard", "mark a revision that never became current as discarded"),
    ):
        bc = bsub.add_parser(action, help=text)
        bc.add_argument("batch_id")
        bc.add_argument("--revision", help="default: the batch's newest quarantined revision")
        bc.set_defaults(func=cmd_batches_change)

    p = sub.add_parser("warehouse", help="set up the warehouse")
    wsub = p.add_subparsers(dest="action", required=True)
    wi = wsub.add_parser(
        "init", help="create the warehouse (setup's job: tasks never create one); safe to re-run"
    )
    wi.set_defaults(func=cmd_warehouse_init)
    ws = wsub.add_parser(
        "sql", help="run one read-only query; print the result as CSV with a header line"
    )
    ws.add_argument("sql", help='e.g. "SELECT * FROM meta.days ORDER BY day DESC LIMIT 5"')
    ws.add_argument(
        "--dev", action="store_true", help="query your dev lake (`mlpipeline dev-db`) instead"
    )
    ws.set_defaults(func=cmd_warehouse_sql)
    wm = wsub.add_parser(
        "migrate",
        help="copy an earlier release's DuckDB-file warehouse (DUCKDB_PATH) into the DuckLake",
    )
    wm.add_argument("--from-duckdb", help="the DuckDB version that wrote it (default 2.0.0)")
    wm.set_defaults(func=cmd_warehouse_migrate)

    p = sub.add_parser(
        "dev-db", help="make the analysts' dev lake (dbt's dev target; reads production read-only)"
    )
    p.set_defaults(func=cmd_dev_db)

    p = sub.add_parser(
        "data-docs-assets",
        help="download the Data Docs pages' styles and scripts (setup; served locally, no CDN)",
    )
    p.set_defaults(func=cmd_data_docs_assets)

    p = sub.add_parser(
        "duckdb-extensions",
        help="install DuckDB's extensions from their pinned packages (setup; no download later)",
    )
    p.set_defaults(func=cmd_duckdb_extensions)

    p = sub.add_parser(
        "dbt-manifest",
        help="parse dbt_project/ into the manifest the nightly's dbt tasks are rendered from",
    )
    p.set_defaults(func=cmd_dbt_manifest)

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

    p = sub.add_parser("online", help="read and operate the online feature store")
    osub = p.add_subparsers(dest="action", required=True)
    og = osub.add_parser("get", help="print one entity's current feature vector as JSON")
    og.add_argument("entity")
    og.set_defaults(func=cmd_online_get)
    orb = osub.add_parser(
        "rollback",
        help="make the previous snapshot current and pin it (nightly switches are skipped) "
        "until `online release`",
    )
    orb.add_argument("--reason", default="", help="why, recorded with the rollback")
    orb.add_argument(
        "--skip-verify",
        action="store_true",
        help="do not re-check the previous snapshot's keys in Redis first (faster, riskier)",
    )
    orb.set_defaults(func=cmd_online_rollback)
    orl = osub.add_parser("release", help="remove the rollback pin; switches move forward again")
    orl.add_argument("--reason", default="", help="why, recorded with the release")
    orl.add_argument(
        "--switch-pending",
        action="store_true",
        help="also switch in the newest verified snapshot a nightly kept aside while pinned",
    )
    orl.set_defaults(func=cmd_online_release)
    ost = osub.add_parser("status", help="current and previous snapshots, pin, recent switches")
    ost.set_defaults(func=cmd_online_status)

    p = sub.add_parser("serve", help="online scoring: POST /score with one transaction as JSON")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--model-refresh-seconds",
        type=float,
        default=60.0,
        help="how often the champion alias is re-resolved (a promotion or rollback is picked up)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("model", help="roll the champion model back, release the rollback pin")
    msub = p.add_subparsers(dest="action", required=True)
    mr = msub.add_parser(
        "rollback", help="restore the previous champion and pin it until `model release`"
    )
    mr.add_argument("--reason", required=True, help="why (kept on the model versions)")
    mr.add_argument("--by", help="who (default: the current user)")
    mr.set_defaults(func=cmd_model_rollback)
    ml = msub.add_parser("release", help="let the nightly promote again (the champion stays)")
    ml.add_argument("--by", help="who (default: the current user)")
    ml.set_defaults(func=cmd_model_release)

    p = sub.add_parser(
        "retention", help="delete old revisions, exports, splits, runs... (pipeline.yaml ages)"
    )
    p.add_argument("--dry-run", action="store_true", help="report the plan, delete nothing")
    p.add_argument("--only", choices=RETENTION_KINDS, help="one kind (default: all)")
    p.set_defaults(func=cmd_retention)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)


if __name__ == "__main__":
    main()
