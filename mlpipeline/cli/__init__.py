"""`mlpipeline` command line: demo data, catch-up, the demo run, and what operators inspect.

One module per group of commands; each adds its own subcommands (`register`).
"""

from __future__ import annotations

import argparse
import logging

from mlpipeline.cli import batches, local, monitor, online, operate, setup


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (local, batches, setup, online, operate, monitor):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)
