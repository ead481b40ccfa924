"""An existing user's warehouse, a DuckDB file written by the DuckDB of earlier releases (2.0.0),
after the upgrade to the DuckLake: openers say what to run, `mlpipeline warehouse migrate` copies
every table, view and row into the lake, leaves the file as it was, and a second run changes
nothing.

The 2.0.0 file is made by DuckDB 2.0.0 itself, in an environment uv makes for it (as migrate
does)."""

from __future__ import annotations

import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.cli import main as cli
from mlpipeline.core.config import Settings
from mlpipeline.warehouse import warehouse_migrate
from mlpipeline.warehouse.meta import update_day

pytestmark = pytest.mark.integration

# Views named so that EXPORT lists the one that reads another first.
OLD_WAREHOUSE = """
CREATE SCHEMA raw;
CREATE SCHEMA meta;
CREATE TABLE meta.warehouse (created_at TIMESTAMPTZ, path VARCHAR);
INSERT INTO meta.warehouse VALUES (now(), 'old');
CREATE TABLE meta.days (day DATE PRIMARY KEY, rows_scored BIGINT, note JSON);
INSERT INTO meta.days SELECT DATE '2026-01-01' + range::INT, range, '{"a": 1}' FROM range(40);
CREATE TABLE raw.transactions (
    transaction_id VARCHAR, amount DECIMAL(18, 2), event_ts TIMESTAMP, current BOOLEAN
);
INSERT INTO raw.transactions
SELECT 't' || range, range / 100, TIMESTAMP '2026-01-01' + to_seconds(range), range % 3 <> 0
FROM range(5000);
CREATE VIEW raw.transactions_current AS SELECT * FROM raw.transactions WHERE current;
CREATE VIEW raw.amounts_current AS SELECT sum(amount) AS total FROM raw.transactions_current;
"""
MAKE = (
    "import sys, duckdb; duckdb.connect(sys.argv[1]).execute(sys.argv[2]); "
    "print(duckdb.__version__)"
)


@pytest.fixture()
def old_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings.under(tmp_path / "data")
    settings.duckdb_path.parent.mkdir(parents=True)
    made = subprocess.run(
        [*warehouse_migrate.python_with_duckdb(warehouse_migrate.WRITER), "-c", MAKE]
        + [str(settings.duckdb_path), OLD_WAREHOUSE],
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.strip() == warehouse_migrate.WRITER
    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DUCKDB_PATH", str(settings.duckdb_path))
    monkeypatch.delenv(warehouse.ACCESS_VAR, raising=False)
    return settings


def test_an_old_warehouse_is_named_with_the_command_then_migrated_whole(old_warehouse, capsys):
    with pytest.raises(warehouse.WarehouseMissing, match="mlpipeline warehouse migrate"):
        warehouse.require(old_warehouse)
    before = old_warehouse.duckdb_path.read_bytes()

    cli(["warehouse", "migrate"])
    assert capsys.readouterr().out.strip() == '{"tables": 2, "rows": 5040}'

    with warehouse.connect(old_warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*), sum(rows_scored) FROM meta.days").fetchall() == [
            (40, 780)
        ]
        total = con.execute("SELECT total FROM raw.amounts_current").fetchall()
        current = con.execute("SELECT count(*) FROM raw.transactions_current").fetchall()
        note = con.execute("SELECT note->>'a' FROM meta.days LIMIT 1").fetchall()
    # Every cent kept: the amounts of the transactions not divisible by 3, through two views.
    assert total == [(Decimal("83316.67"),)]
    assert current == [(3333,)] and note == [("1",)]
    # The registry's key stays unique without the file's PRIMARY KEY: the code keeps it.
    with warehouse.connect(old_warehouse) as con:
        update_day(con, date(2026, 1, 1), rows_scored=7)
        assert con.execute(
            "SELECT count(*), max(rows_scored) FROM meta.days WHERE day = DATE '2026-01-01'"
        ).fetchall() == [(1, 7)]
    assert old_warehouse.duckdb_path.read_bytes() == before
    assert not list(old_warehouse.duckdb_path.parent.glob("warehouse-migrate-*"))

    cli(["warehouse", "migrate"])
    assert capsys.readouterr().out.strip() == "{}"
