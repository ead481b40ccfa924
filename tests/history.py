"""The multi-day history the end-to-end stories start from: built once per test session
(conftest's `e2e_history`), then copied by each story into its own data folder.

Landing and catching up six weeks is most of a story's setup, and the stories differ only in
what happens from day D (NIGHT) on, so they share the weeks before it: 600 customers, every day
from START to NIGHT-1 landed and caught up, as `mlpipeline catchup` leaves a new installation
(warehouse, folder object store, Data Docs; no Redis, MLflow or Airflow state). A story lands
the days it runs on top of its copy with `generate_range(..., customers=CUSTOMERS)`: each day is
generated from the seed and the day alone, so the population carries on.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

from mlpipeline import quality
from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import from_settings
from mlpipeline.devtools.generate import generate_range
from mlpipeline.pipeline.catchup import catchup
from mlpipeline.warehouse import connect
from tests.e2e_env import pipeline_env
from tests.lake_copy import relocate

START = date(2026, 1, 1)
CUSTOMERS = 600
NIGHT = START + timedelta(days=44)
# dbt's logs and compiled files name the folder they ran in; each copy's dbt makes its own.
DBT_STATE = "dbt"


def build(data_dir: Path) -> Path:
    """Land START..NIGHT-1 in the folder store under `data_dir` and catch every day up."""
    with pipeline_env(data_dir, None, unset=[quality.SUITES_ENV]) as settings:
        last = NIGHT - timedelta(days=1)
        generate_range(from_settings(settings), START, last, customers=CUSTOMERS)
        catchup(START, last)
    return data_dir


def copy_history(history: Path, data_dir: Path) -> Path:
    """A private copy of the history in `data_dir` (new or empty) that nothing leads back from:
    absolute paths the warehouse stored (its data path, where setup made it) are moved to the
    copy, and no other file of it may name the history's folder."""
    shutil.copytree(
        history,
        data_dir,
        ignore=lambda folder, names: [DBT_STATE] if Path(folder) == history else [],
        dirs_exist_ok=True,
    )
    old, new = str(history.resolve()), str(data_dir.resolve())
    relocate(Settings.under(data_dir))
    with connect(Settings.under(data_dir)) as con:
        columns = con.execute(
            "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE t.table_type = 'BASE TABLE' AND c.data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            name, value = f'"{schema}"."{table}"', f'"{column}"'
            con.execute(
                f"UPDATE {name} SET {value} = replace({value}, ?, ?) WHERE contains({value}, ?)",
                [old, new, old],
            )
    files = [
        str(path.relative_to(data_dir))
        for path in sorted(data_dir.rglob("*"))
        # The catalog keeps the rows' earlier versions (time travel), old paths included.
        if path.is_file() and path.suffix != ".sqlite" and old.encode() in path.read_bytes()
    ]
    if files:
        raise AssertionError(f"the copy in {data_dir} names the history {history}: {files}")
    return data_dir
