"""DuckDB's extensions come from the pinned packages, into the project's folder, and a connection
made with the project's config neither downloads one nor looks anywhere else."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from mlpipeline.core.config import PROJECT_ROOT
from mlpipeline.warehouse import duckdb_extensions

pytestmark = pytest.mark.unit


def _connect(folder: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(config={**duckdb_extensions.config(), "extension_directory": str(folder)})


def test_setup_installs_every_extension_where_connections_load_them(tmp_path: Path) -> None:
    folder = duckdb_extensions.install(tmp_path / "ext")
    platform = duckdb.sql("PRAGMA platform").fetchall()[0][0]
    installed = sorted(p.name for p in (folder / f"v{duckdb.__version__}" / platform).iterdir())
    # Named as LOAD looks for them: the postgres and sqlite packages' files are renamed.
    assert [n for n in installed if n.endswith(".duckdb_extension")] == [
        "ducklake.duckdb_extension",
        "httpfs.duckdb_extension",
        "postgres_scanner.duckdb_extension",
        "sqlite_scanner.duckdb_extension",
    ]
    with _connect(folder) as con:
        duckdb_extensions.load(con, "ducklake", "sqlite", "postgres", "httpfs")
        loaded = con.execute(
            "SELECT extension_name, install_mode FROM duckdb_extensions() WHERE loaded "
            "AND install_mode = 'CUSTOM_PATH' ORDER BY 1"
        ).fetchall()
    assert [name for name, _ in loaded] == [
        "ducklake",
        "httpfs",
        "postgres_scanner",
        "sqlite_scanner",
    ]
    # Re-running setup is safe.
    assert duckdb_extensions.install(tmp_path / "ext") == folder


def test_a_missing_extension_is_never_downloaded_and_says_what_to_run(tmp_path: Path) -> None:
    with _connect(tmp_path / "empty") as con:
        with pytest.raises(
            duckdb_extensions.ExtensionsMissing, match="mlpipeline duckdb-extensions"
        ):
            duckdb_extensions.load(con, "ducklake")
        assert not (tmp_path / "empty").exists() or not any(
            (tmp_path / "empty").rglob("*.duckdb_extension")
        )


def test_connections_look_in_this_environments_folder_and_never_download() -> None:
    config = duckdb_extensions.config()
    assert Path(str(config["extension_directory"])).is_relative_to(sys.prefix)
    assert config["autoinstall_known_extensions"] is False


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_dbt_connects_with_the_same_extension_options(target: str) -> None:
    """dbt's profile makes its own DuckDB connections: it must neither download, nor look
    elsewhere, nor re-check the pinned files' signatures on every load, as the library does."""
    profiles = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "profiles.yml").read_text())
    options = profiles["fraud_features"]["outputs"][target]["config_options"]
    own = {k: v for k, v in duckdb_extensions.config().items() if isinstance(v, bool)}
    assert own and {k: options.get(k) for k in own} == own
