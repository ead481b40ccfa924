"""`mlpipeline online` and `serve`: read and operate the online store, serve scores."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from mlpipeline.core.config import Settings

if TYPE_CHECKING:
    from mlpipeline.online.store import RedisOnlineStore


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


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
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
