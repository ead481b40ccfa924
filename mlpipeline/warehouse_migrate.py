"""`mlpipeline warehouse migrate`: bring a warehouse file written by another DuckDB to this one.

DuckDB opens only the storage versions it knows, and earlier releases of this project pinned
DuckDB 2.0.0, whose files DuckDB 1.5.5 (pinned now: DuckLake's extensions exist for it only)
cannot open. The file is exported to Parquet by the DuckDB that wrote it, run by uv in a
throwaway environment, then imported here into a new file: schemas, tables with their
constraints, views (each once what it reads exists), every row. Row counts are compared table by
table before the new file takes the old one's place; the old file is kept beside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

# The DuckDB that wrote the warehouse files of earlier releases.
WRITER = "2.0.0"

EXPORT = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute(f"EXPORT DATABASE '{sys.argv[2]}' (FORMAT parquet)")
"""


class NeedsMigration(RuntimeError):
    """The warehouse file was written by a DuckDB this environment cannot read."""


def is_newer_storage(exc: duckdb.Error) -> bool:
    return "newer version of DuckDB" in str(exc)


def needs_migration(path: Path, exc: duckdb.Error) -> NeedsMigration:
    return NeedsMigration(
        f"the warehouse {path} was written by a newer DuckDB than this environment's "
        f"{duckdb.__version__} ({str(exc).splitlines()[0]}). Run `mlpipeline warehouse migrate` "
        "(it exports the file through the DuckDB that wrote it, imports it here and keeps the "
        "old file beside it)"
    )


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


def _create_objects(con: duckdb.DuckDBPyConnection, schema_sql: str) -> None:
    """Run the export's DDL; a view that reads a view not created yet waits for the next pass
    (EXPORT lists views by name, not by dependency)."""
    pending = [statement.query for statement in con.extract_statements(schema_sql)]
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


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = "
        "current_database() ORDER BY 1, 2"
    ).fetchall()
    return {
        f"{schema}.{table}": con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchall()[
            0
        ][0]
        for schema, table in tables
    }


def migrate(path: Path, *, writer: str = WRITER) -> dict[str, int]:
    """Rewrite the warehouse at `path` in this DuckDB's format; returns rows per table (empty
    when the file is readable already: nothing to do, safe to re-run)."""
    if _readable(path):
        log.info(
            "warehouse %s is readable by DuckDB %s: nothing to migrate", path, duckdb.__version__
        )
        return {}
    began = time.monotonic()
    export = path.with_name(f".{path.name}.export")
    new = path.with_name(f"{path.name}.migrating")
    backup = path.with_name(f"{path.name}.{writer}.bak")
    shutil.rmtree(export, ignore_errors=True)
    new.unlink(missing_ok=True)
    log.info("warehouse %s: exporting with DuckDB %s to %s", path, writer, export)
    export_with(path, export, writer)
    with duckdb.connect(str(new)) as con:
        _create_objects(con, (export / "schema.sql").read_text())
        loads = [s.query for s in con.extract_statements((export / "load.sql").read_text())]
        expected: dict[str, int] = {}
        for i, load in enumerate(loads, 1):
            con.execute(load)
            table, source = load.split()[1], load.split("'")[1]
            expected[table.replace('"', "")] = con.execute(
                "SELECT count(*) FROM read_parquet(?)", [source]
            ).fetchall()[0][0]
            log.info("warehouse migrate: %d/%d tables loaded (%s)", i, len(loads), table)
        counts = _counts(con)
    wrong = {t: (n, counts.get(t)) for t, n in expected.items() if counts.get(t) != n}
    if wrong:
        raise RuntimeError(
            f"migrated copy {new} does not match the export (table: exported, imported): {wrong}; "
            f"the warehouse {path} is untouched"
        )
    os.replace(path, backup)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        os.replace(wal, backup.with_name(backup.name + ".wal"))
    os.replace(new, path)
    shutil.rmtree(export)
    log.info(
        "warehouse %s migrated to DuckDB %s: %d tables, %d rows in %.0fs; the old file is %s",
        path,
        duckdb.__version__,
        len(counts),
        sum(counts.values()),
        time.monotonic() - began,
        backup,
    )
    return counts
