"""The analysts' read-only way into a warehouse whose catalog is PostgreSQL (the stack's).

A login role that may read the catalog's tables, those DuckLake creates later included, and write
nothing. An analyst's dev target attaches production through it (`WAREHOUSE_READER_CATALOG`), so a
dev build aimed at production is refused by PostgreSQL itself, not by a convention. Setup
(airflow-init) runs it on every start: the password follows `.env`, new catalog tables get read.
"""

from __future__ import annotations

import logging
import re

import duckdb

from mlpipeline.warehouse import duckdb_extensions, lake

log = logging.getLogger(__name__)

ROLE = "warehouse_reader"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _grants(role: str, password: str) -> str:
    """One DO block: create or update the role, then read rights on the catalog's schema.

    Default privileges cover the tables the writer (this connection's user) creates later: a
    DuckLake upgrade may add catalog tables, and the reader must see them without another setup.
    """
    name = lake.sql_string(role)
    return f"""
DO $grants$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', {name});
  END IF;
  EXECUTE format(
    'ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD %L',
    {name}, {lake.sql_string(password)});
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {name});
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), {name});
  EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', current_schema(), {name});
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I',
                 current_schema(), {name});
END
$grants$;
"""


def grant(catalog: str, password: str, role: str = ROLE) -> None:
    """Create `role` (or set its password) with read-only access to the PostgreSQL catalog
    `catalog` (a `postgres:` WAREHOUSE_CATALOG), as the catalog's own user."""
    kind, _, dsn = catalog.partition(":")
    if kind != "postgres":
        raise ValueError(
            f"a read-only warehouse role needs a PostgreSQL catalog, and WAREHOUSE_CATALOG is "
            f"{kind!r}: on a SQLite catalog give analysts a copy, or unset "
            "WAREHOUSE_READER_PASSWORD"
        )
    if not _IDENTIFIER.match(role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name (a-z, 0-9, _)")
    if not password:
        raise ValueError("the read-only role needs a password: set WAREHOUSE_READER_PASSWORD")
    con = duckdb.connect(config=duckdb_extensions.config())
    try:
        con.execute(f"ATTACH {lake.sql_string(dsn)} AS catalog_db (TYPE postgres)")
        con.execute("CALL postgres_execute('catalog_db', ?)", [_grants(role, password)])
    finally:
        con.close()
    log.info("warehouse read-only role %s: may read the catalog, write nothing", role)
