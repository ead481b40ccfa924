"""DuckDB's extensions from the pinned PyPI packages, loadable with no network at run time.

DuckDB fetches an extension from its own repository on first use, into a per-user folder. Here
setup installs the files that the `duckdb-extension-*` packages (pinned in uv.lock) ship into
the environment's own extension directory, and every connection made with `config()` looks
there only, with automatic download off: what runs is what the lock pinned, on any host.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

# extension → the package that ships it (its file: extensions/v<duckdb>/<name>.duckdb_extension).
PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
    "postgres": "duckdb_extension_postgres",
    "sqlite": "duckdb_extension_sqlite",
}


class ExtensionsMissing(RuntimeError):
    """Setup did not install the DuckDB extensions where this environment looks for them."""


def directory() -> Path:
    """Beside the environment's interpreter: a fresh `.venv` or image gets its own, made by its
    own setup, and no per-user folder is read."""
    return Path(sys.prefix) / "share" / "duckdb-extensions"


def config() -> dict[str, str | bool]:
    """duckdb.connect(config=...) for a connection that loads only what setup installed and
    spills to a folder of its own.

    An in-memory database would spill (a sort, a big join beyond its memory limit) to `.tmp` in
    whatever folder the process runs from, and two databases spilling to one folder overwrite
    each other's files; DuckDB makes this one on the first spill and removes it on close.

    DuckDB checks an extension's signature by hashing its file on every LOAD, in every new
    database: about 0.25 s a connection for the lake's two (70 MB), most of a short stage's
    warehouse time. The files here are the pinned packages' (`make install`'s `uv sync --frozen`
    checks them against uv.lock's hashes), loaded from the environment's own folder with
    downloads off, so the check is skipped (dbt's profile does the same).
    """
    spill = Path(tempfile.gettempdir()) / f"mlpipeline-duckdb-{os.getpid()}-{uuid.uuid4().hex}"
    return {
        "extension_directory": str(directory()),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        "allow_unsigned_extensions": True,
        "temp_directory": str(spill),
    }


def _shipped(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionsMissing(
            f"the package {package} is not installed: run `make install` (uv.lock pins it)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    wanted = root / "extensions" / f"v{duckdb.__version__}"
    files = sorted(wanted.glob("*.duckdb_extension"))
    if len(files) != 1:
        raise ExtensionsMissing(
            f"{package} ships no extension for DuckDB {duckdb.__version__} in {wanted}: its "
            "version must match duckdb's in pyproject.toml"
        )
    return files[0]


def install(folder: Path | None = None) -> Path:
    """Install every extension from its package into `folder` (default `directory()`).
    DuckDB's INSTALL from a file names it as LOAD expects (sqlite → sqlite_scanner). Re-running
    replaces the files with the same ones."""
    folder = folder or directory()
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(config={**config(), "extension_directory": str(folder)}) as con:
        for name, package in PACKAGES.items():
            con.execute(f"FORCE INSTALL '{_shipped(package)}'")
            log.info("DuckDB extension %s %s installed in %s", name, duckdb.__version__, folder)
    return folder


def load(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """LOAD extensions on a connection made with `config()`, saying what to run when setup
    did not install them (instead of DuckDB's advice to download them)."""
    for name in names:
        try:
            con.execute(f"LOAD {name}")
        except duckdb.IOException as exc:
            raise ExtensionsMissing(
                f"DuckDB extension {name} is not installed in {directory()}: run "
                "`mlpipeline duckdb-extensions` (make install and the image build do)"
            ) from exc
