"""`mlpipeline model` and `retention`: roll the champion back or release it, clean up."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from mlpipeline.core.config import Settings
from mlpipeline.ops.retention import KINDS as RETENTION_KINDS


def cmd_model_rollback(args: argparse.Namespace) -> None:
    """Restore the previous champion and pin it: the nightly stops promoting until release."""
    from mlpipeline.training import champion_alias

    try:
        result = champion_alias.rollback_champion(
            Settings.from_env().mlflow_tracking_uri, reason=args.reason, by=args.by
        )
    except champion_alias.RollbackError as exc:
        sys.exit(f"mlpipeline model rollback: {exc}")
    print(json.dumps(result, indent=2))


def cmd_model_release(args: argparse.Namespace) -> None:
    """Remove the rollback pin; the champion stays until a nightly promotes a better model."""
    from mlpipeline.training import champion_alias

    result = champion_alias.release_pin(Settings.from_env().mlflow_tracking_uri, by=args.by)
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


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
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
