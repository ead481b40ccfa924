"""Several writer processes on one DuckLake, its catalog in SQLite or PostgreSQL, while another
process reads.

The risky part of a shared warehouse, tried first: each writer appends raw rows (as ingestion
does) and replaces whole days of a snapshot table (as an incremental dbt model does: delete the
day, insert it again), the days shared between writers so their commits conflict; a reader
queries every few milliseconds. No appended row may be lost, each day must hold exactly one
unit's rows, and the reader must only ever see a day empty or whole. A commit that loses a race
is retried whole, and the log says which unit and why.

Found here: with a SQLite catalog the writers lose nothing, but a reader is sometimes refused
("database is locked") while a writer commits; with PostgreSQL no query fails. And the pinned
DuckLake lets two transactions that each delete nothing (a day still empty) and then insert both
commit (duckdb/ducklake#1393): a reader saw a day holding two units' rows until a later unit
replaced it. So every replace claims its table first (`meta.claim`), as the product's do.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from mlpipeline import warehouse
from mlpipeline.core.config import Settings
from mlpipeline.warehouse import lake, meta

pytestmark = pytest.mark.integration

WRITERS = 4
UNITS = 12
DAYS = 3
ROWS = 500


def _writer(catalog: str, data_path: str, writer: int, retries_file: str) -> None:
    import logging

    retries: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            retries.append(record.getMessage())

    logging.getLogger("mlpipeline.warehouse.lake").addHandler(Keep())
    logging.getLogger("mlpipeline.warehouse.lake").setLevel(logging.INFO)
    with lake.connect(catalog, data_path) as con:
        for unit in range(UNITS):
            day = unit % DAYS

            def replace_day(c: duckdb.DuckDBPyConnection, day: int = day, unit: int = unit) -> None:
                meta.claim(c, "snapshot")
                c.execute("DELETE FROM snapshot WHERE day = ?", [day])
                c.execute(
                    f"INSERT INTO snapshot SELECT ?, ?, ?, range FROM range({ROWS})",
                    [day, writer, unit],
                )
                c.execute(
                    f"INSERT INTO raw_rows SELECT ?, ?, range FROM range({ROWS})", [writer, unit]
                )

            lake.run_unit(con, f"writer {writer} unit {unit}", replace_day)
    Path(retries_file).write_text(json.dumps(retries))


def _reader(catalog: str, data_path: str, stop, out: str) -> None:  # noqa: ANN001 - an Event
    seen, failures, reads = set(), [], 0
    with lake.connect(catalog, data_path, read_only=True) as con:
        while not stop.is_set():
            try:
                rows = con.execute(
                    "SELECT day, count(*), count(DISTINCT (writer, unit)) FROM snapshot "
                    "GROUP BY day"
                ).fetchall()
                seen.update((count, units) for _, count, units in rows)
                reads += 1
            except duckdb.Error as exc:
                failures.append(str(exc))
            time.sleep(0.005)
    Path(out).write_text(json.dumps({"seen": sorted(seen), "failures": failures, "reads": reads}))


@pytest.fixture(params=["sqlite", "postgres"])
def new_lake(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """An empty lake with the two tables, its catalog in a SQLite file or a new PostgreSQL
    database of the session's cluster."""
    if request.param == "postgres":
        cluster = request.getfixturevalue("postgres_server")
        database = f"lake_{uuid.uuid4().hex[:12]}"
        cluster.psql("postgres", "-c", f"CREATE DATABASE {database}")
        catalog = f"postgres:{cluster.libpq(database)}"
    else:
        catalog = f"sqlite:{tmp_path / 'catalog.sqlite'}"
    data_path = f"{tmp_path / 'data'}/"
    with lake.connect(catalog, data_path) as con:
        meta.ensure_meta(con)
        con.execute("INSERT INTO meta.registry_claims VALUES ('snapshot', 0)")
        con.execute("CREATE TABLE snapshot (day INT, writer INT, unit INT, v BIGINT)")
        con.execute("CREATE TABLE raw_rows (writer INT, unit INT, v BIGINT)")
    return catalog, data_path


def test_concurrent_writers_lose_nothing_and_readers_see_whole_days(
    new_lake: tuple[str, str], tmp_path: Path
) -> None:
    catalog, data_path = new_lake
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    reader = spawn.Process(target=_reader, args=(catalog, data_path, stop, tmp_path / "read.json"))
    reader.start()
    writers = [
        spawn.Process(target=_writer, args=(catalog, data_path, w, tmp_path / f"retries-{w}.json"))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(300)
    stop.set()
    reader.join(60)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert reader.exitcode == 0

    with lake.connect(catalog, data_path, read_only=True) as con:
        appended = con.execute(
            "SELECT count(*), count(DISTINCT (writer, unit)) FROM raw_rows"
        ).fetchall()
        days = con.execute(
            "SELECT day, count(*), count(DISTINCT (writer, unit)) FROM snapshot GROUP BY day "
            "ORDER BY day"
        ).fetchall()
    assert appended == [(WRITERS * UNITS * ROWS, WRITERS * UNITS)]
    assert days == [(day, ROWS, 1) for day in range(DAYS)]
    read = json.loads((tmp_path / "read.json").read_text())
    if catalog.startswith("sqlite:"):
        # SQLite's lock: a reader is refused while a writer commits (no busy timeout to set).
        # Why tests and the stack use a PostgreSQL catalog, and SQLite is for one machine.
        assert all("database is locked" in failure for failure in read["failures"])
    else:
        assert read["failures"] == []
    assert read["reads"] > 20
    assert read["seen"] and all(seen == [ROWS, 1] for seen in read["seen"]), read["seen"]
    retries = [
        r for w in range(WRITERS) for r in json.loads((tmp_path / f"retries-{w}.json").read_text())
    ]
    said = re.compile(r"writer \d+ unit \d+: attempt \d+/\d+ lost a commit race \(.+\); running")
    assert all(said.match(retry) for retry in retries), retries[:5]


def test_an_error_that_is_not_a_commit_race_is_raised_at_once(new_lake: tuple[str, str]) -> None:
    calls = []

    def broken(con: duckdb.DuckDBPyConnection) -> None:
        calls.append(1)
        con.execute("INSERT INTO snapshot VALUES (1, 1, 1, 1)")
        con.execute("SELECT no_such_column FROM snapshot")

    catalog, data_path = new_lake
    with lake.connect(catalog, data_path) as con:
        with pytest.raises(duckdb.BinderException, match="no_such_column"):
            lake.run_unit(con, "broken unit", broken)
        assert con.execute("SELECT count(*) FROM snapshot").fetchall() == [(0,)]
    assert calls == [1]


def test_meeting_another_builds_dbt_backup_is_a_lost_race(new_lake: tuple[str, str]) -> None:
    """dbt swaps a table in by renaming the old one to `<name>__dbt_backup`, and drops that only
    after committing: a second build of the model meanwhile gets this error, and reruns."""
    catalog, data_path = new_lake
    with lake.connect(catalog, data_path) as con:
        con.execute("CREATE TABLE stg AS SELECT 1 AS x")
        con.execute("CREATE TABLE stg__dbt_backup AS SELECT 1 AS x")
        with pytest.raises(duckdb.Error) as raised:
            con.execute("ALTER TABLE stg RENAME TO stg__dbt_backup")
    assert lake.lost_a_race(str(raised.value)), str(raised.value)
    assert not lake.lost_a_race("Binder Error: Referenced column no_such_column not found")


def test_a_warehouse_with_its_files_in_s3_serves_every_cursor(
    tmp_path: Path,
    s3_store,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001 - an S3Store
) -> None:
    """The stack's layout: the Parquet files in a bucket over the S3 API (moto here), the S3
    settings from the variables boto3 reads, for the connection and the cursors made from it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_store.client.meta.endpoint_url)
    monkeypatch.delenv(warehouse.ACCESS_VAR, raising=False)
    settings = Settings.under(tmp_path).model_copy(
        update={"warehouse_data_path": f"s3://{s3_store.bucket}/warehouse/"}
    )
    warehouse.create(settings)
    with warehouse.connect(settings) as con:
        con.execute("CREATE TABLE raw.numbers AS SELECT range AS n FROM range(50000)")
    assert any(key.endswith(".parquet") for key in s3_store.list("warehouse/"))
    with warehouse.connect(settings, read_only=True) as con, lake.cursor(con) as cursor:
        assert cursor.execute("SELECT sum(n) FROM raw.numbers").fetchall() == [(1249975000,)]
