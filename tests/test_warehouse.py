"""The warehouse seam: a DuckLake only setup creates, and inside orchestrated tasks only the
tasks that declared it may open it (the listener of
mlpipeline_airflow.warehouse_access says which did)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.warehouse import lake

pytestmark = pytest.mark.unit


@pytest.fixture()
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv(warehouse.ACCESS_VAR, raising=False)
    return Settings.under(tmp_path / "data")


def _catalog_file(settings: Settings) -> Path:
    return Path(settings.warehouse_catalog.removeprefix("sqlite:"))


def test_an_opener_never_creates_a_warehouse_and_names_the_catalog_it_looked_for(fresh):
    with pytest.raises(warehouse.WarehouseMissing) as error, warehouse.connect(fresh):
        pass
    assert fresh.warehouse_catalog in str(error.value)
    assert fresh.warehouse_data_path in str(error.value)
    assert "WAREHOUSE_CATALOG" in str(error.value)
    assert not fresh.data_dir.exists()


def test_a_catalog_setup_did_not_make_is_refused(fresh):
    """What a tool attaching the lake on its own would leave: an empty DuckLake catalog."""
    fresh.data_dir.mkdir(parents=True)
    with lake.connect(fresh.warehouse_catalog, fresh.warehouse_data_path):
        pass
    assert _catalog_file(fresh).is_file()
    with pytest.raises(warehouse.WarehouseMissing, match="setup never ran"):
        warehouse.require(fresh)


def test_a_password_in_the_catalog_is_not_shown():
    settings = Settings.under(Path("/data"))
    catalog = "postgres:dbname=lake host=pg user=mlpipeline password=s3cret"
    shown = warehouse.describe(settings.model_copy(update={"warehouse_catalog": catalog}))
    assert "s3cret" not in shown and "password=***" in shown and "host=pg" in shown
    uri = "postgres:postgresql://mlpipeline:s3cret@pg:5432/warehouse"
    shown = warehouse.describe(settings.model_copy(update={"warehouse_catalog": uri}))
    assert "s3cret" not in shown and "mlpipeline:***@pg:5432/warehouse" in shown


def test_setup_creates_once_and_openers_then_find_it(fresh):
    assert fresh.warehouse_catalog in warehouse.create(fresh)
    warehouse.create(fresh)
    warehouse.require(fresh)
    with warehouse.connect(fresh, read_only=True) as con:
        schemas = {
            r[0]
            for r in con.execute(
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()"
            ).fetchall()
        }
        markers = con.execute(f"SELECT count(*) FROM {warehouse.MARKER_TABLE}").fetchall()[0][0]
    assert set(warehouse.SCHEMAS) <= schemas
    assert markers == 1


def test_views_are_made_again_only_when_their_sql_changes(fresh):
    """Loads call this on every revision: an unchanged view costs no snapshot, a changed one
    (a new release) replaces the old definition."""
    warehouse.create(fresh)
    with warehouse.connect(fresh) as con:
        con.execute("CREATE TABLE raw.numbers AS SELECT range AS n FROM range(5)")

        def snapshots() -> int:
            return con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchall()[0][0]

        lake.ensure_views(con, {"raw.small": "SELECT n FROM raw.numbers WHERE n < 2"})
        made = snapshots()
        lake.ensure_views(con, {"raw.small": "SELECT n FROM raw.numbers WHERE n < 2"})
        assert snapshots() == made
        assert con.execute("SELECT count(*) FROM raw.small").fetchall() == [(2,)]
        lake.ensure_views(con, {"raw.small": "SELECT n FROM raw.numbers WHERE n < 4"})
        assert snapshots() > made
        assert con.execute("SELECT count(*) FROM raw.small").fetchall() == [(4,)]


def test_a_task_that_did_not_declare_the_warehouse_cannot_open_it(fresh, monkeypatch):
    warehouse.create(fresh)
    monkeypatch.setenv(warehouse.ACCESS_VAR, "fraud_nightly.training.split (pool 'default_pool')")
    with pytest.raises(warehouse.UndeclaredWarehouseAccess) as error, warehouse.connect(fresh):
        pass
    assert "fraud_nightly.training.split" in str(error.value)
    assert "pool='warehouse'" in str(error.value)
    monkeypatch.setenv(warehouse.ACCESS_VAR, warehouse.DECLARED)
    with warehouse.connect(fresh, read_only=True):
        pass


def test_the_listener_declares_exactly_the_warehouse_pool():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))
    try:
        from mlpipeline_airflow.warehouse_access import access_of
    finally:
        sys.path.pop(0)
    assert access_of("score", "fraud_nightly", "warehouse") == warehouse.DECLARED
    assert access_of("split", "fraud_nightly", "default_pool") != warehouse.DECLARED
    assert "fraud_nightly.split" in access_of("split", "fraud_nightly", None)


def _cli_sql(settings: Settings, sql: str, monkeypatch, capsys) -> tuple[int, str, str]:  # noqa: ANN001
    from mlpipeline.cli import main

    monkeypatch.setenv("MLPIPELINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("WAREHOUSE_CATALOG", settings.warehouse_catalog)
    monkeypatch.setenv("WAREHOUSE_DATA_PATH", settings.warehouse_data_path)
    code = 0
    try:
        main(["warehouse", "sql", sql])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_warehouse_sql_prints_csv_with_a_header_and_streams_every_row(fresh, monkeypatch, capsys):
    warehouse.create(fresh)
    with warehouse.connect(fresh) as con:
        con.execute(
            "CREATE TABLE meta.notes AS SELECT range AS n, 'a, \"b\"' AS text FROM range(25000)"
        )
    code, out, err = _cli_sql(
        fresh, "SELECT n, text FROM meta.notes ORDER BY n", monkeypatch, capsys
    )
    lines = out.splitlines()
    assert (code, err) == (0, "")
    assert lines[0] == "n,text"
    assert lines[1] == '0,"a, ""b"""'  # quoted as CSV readers expect
    assert len(lines) == 1 + 25000 and lines[-1].startswith("24999,")


def test_warehouse_sql_refuses_to_write_and_changes_nothing(fresh, monkeypatch, capsys):
    warehouse.create(fresh)
    code, out, err = _cli_sql(fresh, f"DELETE FROM {warehouse.MARKER_TABLE}", monkeypatch, capsys)
    assert code == 1 and out == ""
    assert err.startswith("warehouse sql: ") and "read-only" in err
    warehouse.require(fresh)
