"""`mlpipeline warehouse migrate`: copy the DuckDB-file warehouse of an earlier release into the
DuckLake warehouse.

The file (DUCKDB_PATH) may have been written by DuckDB 2.0.0, which earlier releases pinned and
DuckDB 1.5.5 (pinned now: DuckLake's extensions exist for it only) cannot open: it is then first
exported to Parquet by the DuckDB that wrote it, run by uv in a throwaway environment, and
imported here into a temporary file. Every table is copied into the lake in one transaction
(the registry's tables into their current definitions, by column name), views are recreated
once what they read exists, and row counts are compared table by table before it commits. The
old file is left as it was; the lake records the migration, so a second run does nothing.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.warehouse import lake
from mlpipeline.warehouse.meta import ensure_meta, utcnow

log = logging.getLogger(__name__)

# The DuckDB that wrote the warehouse files of earlier releases.
WRITER = "2.0.0"

EXPORT = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute(f"EXPORT DATABASE '{sys.argv[2]}' (FORMAT parquet)")
"""


MIGRATIONS = """
CREATE TABLE IF NOT EXISTS meta.migrations (
    source VARCHAR NOT NULL, tables BIGINT, rows BIGINT, migrated_at TIMESTAMP NOT NULL
)
"""


def is_newer_storage(exc: duckdb.Error) -> bool:
    return "newer version of DuckDB" in str(exc)


def _readable(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
        return True
    except duckdb.IOException as exc:
        if is_newer_storage(exc):
            return False
        raise


def python_with_duckdb(version: str) -> list[str]:
    """The command of a Python that has DuckDB `version`, in a throwaway environment uv makes
    (from PyPI or uv's cache)."""
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.exists() else (shutil.which("uv") or "uv")
    return [
        uv,
        "run",
        "--quiet",
        "--no-project",
        "--isolated",
        "--with",
        f"duckdb=={version}",
        "python",
    ]


def export_with(path: Path, folder: Path, writer: str) -> None:
    """EXPORT DATABASE to Parquet with DuckDB `writer`, in an environment uv makes for it."""
    done = subprocess.run(
        [*python_with_duckdb(writer), "-c", EXPORT, str(path), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"exporting {path} with DuckDB {writer} failed: {done.stderr.strip()[-2000:]}. uv "
            f"fetches duckdb=={writer} from PyPI (or its cache): check the network or proxy, "
            "or pass --from-duckdb with the version that wrote the file"
        )


def _create_views(con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    """Create views; one that reads a view not created yet waits for the next pass (a file
    lists views by name, not by dependency)."""
    pending = statements
    while pending:
        waiting = []
        for statement in pending:
            try:
                con.execute(statement)
            except duckdb.CatalogException:
                waiting.append(statement)
        if len(waiting) == len(pending):
            con.execute(waiting[0])  # raises the error that no order resolves
        pending = waiting


@contextmanager
def _readable(path: Path, writer: str) -> Iterator[Path]:
    """The warehouse file, or, when this DuckDB cannot open it, a temporary file imported from
    its export by the DuckDB that wrote it."""
    try:
        duckdb.connect(str(path), read_only=True).close()
        yield path
        return
    except duckdb.IOException as exc:
        if not is_newer_storage(exc):
            raise
    with tempfile.TemporaryDirectory(prefix="warehouse-migrate-", dir=path.parent) as tmp:
        export, copy = Path(tmp) / "export", Path(tmp) / path.name
        log.info("warehouse %s: exporting with DuckDB %s to %s", path, writer, export)
        export_with(path, export, writer)
        with duckdb.connect(str(copy)) as con:
            statements = [
                s.query for s in con.extract_statements((export / "schema.sql").read_text())
            ]
            _create_views(con, statements)
            for load in con.extract_statements((export / "load.sql").read_text()):
                con.execute(load.query)
        yield copy


def _tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1, 2",
        [database],
    ).fetchall()
    return [f'"{schema}"."{table}"' for schema, table in rows]


def _views(con: duckdb.DuckDBPyConnection, database: str, names: set[str]) -> list[str]:
    """The views' statements, their references to the file's own catalog made unqualified (so
    they read the lake's tables)."""
    rows = con.execute(
        "SELECT sql FROM duckdb_views() WHERE database_name = ? AND NOT internal ORDER BY 1",
        [database],
    ).fetchall()
    qualified = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\.", re.I)
    return [
        qualified.sub("", re.sub(r'"(' + "|".join(names) + r')"\.', "", sql)) for (sql,) in rows
    ]


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> dict[str, str]:
    schema, name = (part.strip('"') for part in table.split("."))
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [database, schema, name],
    ).fetchall()
    return dict(rows)


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Columns the file's table has and the current definition lacks are kept, not dropped."""
    have = _columns(con, lake.ALIAS, table)
    for column, kind in _columns(con, "old_warehouse", table).items():
        if column not in have:
            log.warning("warehouse migrate: %s keeps the file's column %s %s", table, column, kind)
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')


def migrate(settings: Settings, *, writer: str = WRITER) -> dict[str, int]:
    """Copy the DuckDB-file warehouse at `settings.duckdb_path` into the DuckLake warehouse
    (setup runs first); returns rows per table copied, empty when this file was migrated
    already (safe to re-run)."""
    path = settings.duckdb_path
    if not path.is_file():
        raise FileNotFoundError(
            f"no DuckDB-file warehouse at {path} to migrate: point DUCKDB_PATH at the "
            "warehouse.duckdb of the earlier release"
        )
    began = time.monotonic()
    warehouse.create(settings)
    with warehouse.connect(settings) as con:
        con.execute(MIGRATIONS)
        done = con.execute("SELECT count(*) FROM meta.migrations WHERE source = ?", [str(path)])
        if done.fetchall()[0][0]:
            log.info("warehouse %s was migrated into the lake already: nothing to do", path)
            return {}
    with _readable(path, writer) as source, warehouse.connect(settings) as con:
        con.execute(f"ATTACH '{source}' AS old_warehouse (READ_ONLY)")
        tables = [t for t in _tables(con, "old_warehouse") if t != '"meta"."warehouse"']
        views = _views(con, "old_warehouse", {"old_warehouse", path.stem, source.stem})

        def copy(c: duckdb.DuckDBPyConnection) -> dict[str, int]:
            c.execute(MIGRATIONS)
            ensure_meta(c)
            existing = set(_tables(c, lake.ALIAS))
            counts = {}
            for i, table in enumerate(tables, 1):
                c.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
                if table in existing:
                    _add_missing_columns(c, table)
                    c.execute(f"DELETE FROM {table}")
                    c.execute(f"INSERT INTO {table} BY NAME SELECT * FROM old_warehouse.{table}")
                else:
                    c.execute(f"CREATE TABLE {table} AS SELECT * FROM old_warehouse.{table}")
                copied, source_rows = c.execute(
                    f"SELECT (SELECT count(*) FROM {table}), "
                    f"(SELECT count(*) FROM old_warehouse.{table})"
                ).fetchall()[0]
                if copied != source_rows:
                    raise RuntimeError(
                        f"{table}: {copied} rows copied of {source_rows}; nothing is committed"
                    )
                counts[table.replace('"', "")] = copied
                log.info("warehouse migrate: %d/%d tables copied (%s)", i, len(tables), table)
            _create_views(c, views)
            c.execute(
                "INSERT INTO meta.migrations VALUES (?, ?, ?, ?)",
                [str(path), len(counts), sum(counts.values()), utcnow()],
            )
            return counts

        counts = lake.run_unit(con, f"migration of {path}", copy)
    log.info(
        "warehouse %s copied into %s: %d tables, %d rows in %.0fs; the file is left as it was",
        path,
        warehouse.describe(settings),
        len(counts),
        sum(counts.values()),
        time.monotonic() - began,
    )
    return counts
