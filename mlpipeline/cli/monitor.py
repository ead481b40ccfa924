"""`mlpipeline monitor`: monitor a scored day, print a run day's monitoring summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlpipeline.core.config import Settings


def cmd_monitor_show(args: argparse.Namespace) -> None:
    """Print the drift share, the drifted inputs and the prediction drift of a run day."""
    from mlpipeline.core.days import parse_day
    from mlpipeline.monitoring.metrics_table import read_metrics
    from mlpipeline.monitoring.summary import MonitoringSummary

    rows = read_metrics(Settings.from_env(), parse_day(args.day))
    if rows.empty:
        sys.exit(
            f"mlpipeline monitor show: no monitoring rows for run day {args.day}; run "
            f"`mlpipeline monitor run {args.day}` after the day was scored"
        )
    print(MonitoringSummary.from_rows(rows).text())


def cmd_monitor_run(args: argparse.Namespace) -> None:
    """Monitor a scored day, or each of a range, now (what the nightly does after scoring) and
    print each summary; exits non-zero naming the days that failed, as the nightly task would."""
    from mlpipeline.core.days import parse_day
    from mlpipeline.pipeline.monitor_days import monitor_days

    ranged = args.start is not None or args.end is not None
    if (args.day is not None) == ranged or (ranged and (args.start is None or args.end is None)):
        sys.exit("mlpipeline monitor run: give a day, or --start and --end (not both)")
    start, end = (args.day, args.day) if args.day else (args.start, args.end)
    failed = monitor_days(Settings.from_env(), parse_day(start), parse_day(end), report=print)
    if failed:
        days = "\n".join(f"  {day}: {why}" for day, why in failed.items())
        sys.exit(f"mlpipeline monitor run: {len(failed)} day(s) failed:\n{days}")


def cmd_monitor_report(args: argparse.Namespace) -> None:
    """Write a run day's report page (the one the Airflow UI links) to a file."""
    from pathlib import Path

    from mlpipeline.core.days import parse_day
    from mlpipeline.monitoring import report

    found = report.load_report(Settings.from_env(), parse_day(args.day))
    if found is None:
        sys.exit(
            f"mlpipeline monitor report: no monitoring rows for run day {args.day}; run "
            f"`mlpipeline monitor run {args.day}` after the day was scored"
        )
    out = Path(args.out or f"monitoring-{args.day}.html")
    out.write_text(report.render(found))
    print(f"monitoring report of {args.day} written to {out} (opens offline)")


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
    p = sub.add_parser("monitor", help="input and prediction drift of scored days")
    msub = p.add_subparsers(dest="action", required=True)
    show = msub.add_parser("show", help="print a run day's monitoring summary")
    show.add_argument("day", help="run day, YYYY-MM-DD")
    show.set_defaults(func=cmd_monitor_show)
    run = msub.add_parser(
        "run", help="monitor a scored day (or --start to --end, oldest first); print each summary"
    )
    run.add_argument("day", nargs="?", help="scored day, YYYY-MM-DD")
    run.add_argument("--start", help="first scored day of a range, YYYY-MM-DD")
    run.add_argument("--end", help="last scored day of a range (inclusive), YYYY-MM-DD")
    run.set_defaults(func=cmd_monitor_run)
    page = msub.add_parser("report", help="write a run day's report page (HTML, 60-day trends)")
    page.add_argument("day", help="run day, YYYY-MM-DD")
    page.add_argument("--out", help="the HTML file (default: monitoring-DAY.html)")
    page.set_defaults(func=cmd_monitor_report)
