"""Copies of a test's warehouse: a SQLite-catalog DuckLake moved to another folder.

The catalog records where its Parquet files live (the data path, absolute; the files' own paths
are relative to it), so a copy of the catalog file and the files still points at the original
until the recorded data path is moved too.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from mlpipeline.core.config import Settings


def catalog_file(settings: Settings) -> Path:
    kind, _, target = settings.warehouse_catalog.partition(":")
    if kind != "sqlite":
        raise ValueError(f"only a SQLite catalog can be copied as a file: {kind}")
    return Path(target)


def relocate(copy: Settings) -> None:
    """Point the copied catalog at the copy's data path."""
    with sqlite3.connect(catalog_file(copy)) as db:
        db.execute(
            "UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
            [copy.warehouse_data_path],
        )


def copy_warehouse(source: Settings, copy: Settings) -> None:
    """Copy the warehouse of `source` (catalog and files) to where `copy` has it."""
    catalog_file(copy).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(catalog_file(source), catalog_file(copy))
    shutil.copytree(source.warehouse_data_path, copy.warehouse_data_path, dirs_exist_ok=True)
    relocate(copy)
