"""`mlpipeline batches`: inspect the batch registry, release, discard or supersede revisions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _start_rerun(days: list) -> str:
    """Re-run `days` in order through Airflow's API when configured, else the commands."""
    from mlpipeline.core.config import AirflowApiSettings
    from mlpipeline.ops import backfill

    return "\n".join(backfill.start_rerun(days, AirflowApiSettings.from_env()))


def cmd_batches_change(args: argparse.Namespace) -> None:
    """release / discard a revision; a release then re-runs the days it affects, in order."""
    from mlpipeline.ingest import batches
    from mlpipeline.warehouse import connect

    change = batches.release if args.action == "release" else batches.discard
    with connect() as con:
        try:
            result = change(con, args.batch_id, args.revision, run_id=f"cli:{args.action}")
        except (LookupError, ValueError) as exc:
            sys.exit(f"mlpipeline batches {args.action}: {exc}")
    print(json.dumps(result, indent=2, default=str))
    if args.action == "release":
        print(_start_rerun(result["stale_days"]))


def cmd_batches_supersede(args: argparse.Namespace) -> None:
    """Correct a current revision: drop the rows breaking a rule, or replace it from a file."""
    from pathlib import Path

    from mlpipeline.core.objectstore import from_settings
    from mlpipeline.ingest import supersede
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
    print(_start_rerun(result["stale_days"]))


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
    print(_start_rerun(days) if args.rerun else "\n".join(backfill.rerun_commands(days)))


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


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
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
