"""Setup commands: the warehouse, analysts' dev lakes, offline assets and the dbt manifest."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlpipeline.core.config import Settings


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


def register(sub: Any) -> None:
    """Add this module's commands to the `mlpipeline` parser (`sub`: its subparsers)."""
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
