"""Correct a batch whose current revision turned out wrong: `mlpipeline batches supersede`.

A problem can surface after a revision became current (a merchant category that should never
have been there, a producer who re-sends the day by mail rather than landing it). Waiting for a
re-delivery would leave the day wrong, and a current revision cannot be discarded. The operator
makes a new revision of the batch instead, either the current one without the rows breaking a
rule (`--drop-rule`, the dropped rows recorded in `meta.rejected_rows`) or the content of a
corrected file (`--file`, parsed and row-checked like a landed one). The new revision goes the
normal way: written aside, loaded, raw-checked, promoted (or quarantined, for an operator to
release), and the days it affects are marked stale for their re-run.

The correction is recorded as a `corrected` event naming the revision it supersedes, so a later
re-run of the day, which reads the producer's landed files again, keeps the correction rather
than failing on (or going back to) the superseded content. New landed content still wins: it is
a new revision like any re-delivery.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlpipeline import quality
from mlpipeline.core import categories
from mlpipeline.core.landing import DeclaredFile
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.ingest import batches, gates, pending_rows
from mlpipeline.ingest.batches import PreparedRevision
from mlpipeline.ingest.revisions import load_revision, parse_and_check, write_aside
from mlpipeline.ingest.validation_rules import CATEGORICAL, RowRejects
from mlpipeline.warehouse.raw_tables import table_columns

log = logging.getLogger(__name__)


def drop_rules(dataset: str) -> dict[str, str]:
    """The rules `--drop-rule` accepts for a dataset, with what they drop."""
    return {
        f"undeclared_{name}": f"rows whose {name} is not in the declared list "
        "(dbt_project.yml var categories)"
        for name in CATEGORICAL[dataset]
    }


def _current(con: duckdb.DuckDBPyConnection, batch_id: str) -> dict[str, Any]:
    found = con.execute(
        "SELECT revision FROM meta.batches WHERE batch_id = ? AND status = 'current'", [batch_id]
    ).fetchall()
    if not found:
        raise LookupError(
            f"batch {batch_id} has no current revision to supersede; a quarantined revision is "
            f"released or discarded instead (see `mlpipeline batches show {batch_id}`)"
        )
    row = batches.get(con, batch_id, found[0][0])
    assert row is not None
    return row


def _without_rule(
    con: duckdb.DuckDBPyConnection, current: dict[str, Any], rule: str
) -> tuple[pa.Table, RowRejects]:
    dataset = current["dataset"]
    rules = drop_rules(dataset)
    if rule not in rules:
        raise ValueError(
            f"unknown rule {rule!r} for {dataset}; --drop-rule takes one of {sorted(rules)}"
        )
    category = categories.declared(rule.removeprefix("undeclared_"))
    columns = ", ".join(table_columns(dataset))
    rows = con.sql(
        f"SELECT {columns} FROM raw.{dataset} WHERE batch_id = $batch AND revision = $revision "
        "ORDER BY source_file, source_row",
        params={"batch": current["batch_id"], "revision": current["revision"]},
    ).to_arrow_table()
    values = pc.utf8_lower(pc.utf8_trim_whitespace(rows.column(category.field)))
    drop = pc.invert(pc.is_in(values, pa.array(category.values)))
    dropped = rows.filter(drop)
    if not dropped.num_rows:
        raise ValueError(
            f"no row of batch {current['batch_id']} revision {current['revision']} breaks "
            f"{rule}; nothing to supersede"
        )
    rejects = RowRejects(
        [
            {
                "file": file,
                "row": row,
                "rule": f"{rule} (dropped by operator)",
                "detail": f"{category.field}={str(value)[:60]!r}",
            }
            for file, row, value in zip(
                dropped.column("source_file").to_pylist(),
                dropped.column("source_row").to_pylist(),
                dropped.column(category.field).to_pylist(),
                strict=True,
            )
        ]
    )
    return rows.filter(pc.invert(drop)), rejects


def supersede(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStore,
    batch_id: str,
    *,
    drop_rule: str | None = None,
    file: Path | None = None,
    run_id: str,
) -> dict[str, Any]:
    """Make a new revision of `batch_id` from its current one without the rows breaking
    `drop_rule`, or from `file`; check and promote it; mark the affected days stale."""
    if (drop_rule is None) == (file is None):
        raise ValueError("give exactly one of --drop-rule RULE or --file F")
    current = _current(con, batch_id)
    dataset, day = current["dataset"], current["dt"]
    if drop_rule is not None:
        how = f"drop rule {drop_rule}"
        checksum = hashlib.sha256(f"{current['content_checksum']}\n{how}".encode()).hexdigest()
        prepared = _prepared(current, checksum, current["rows_declared"], current["source_objects"])
        prepared.rows_read, prepared.rows_rejected = current["rows_read"], current["rows_rejected"]
        table, rejects = _without_rule(con, current, drop_rule)
        table = table.set_column(
            table.schema.get_field_index("revision"),
            "revision",
            pa.array([prepared.revision] * table.num_rows, pa.string()),
        )
    else:
        assert file is not None
        data = file.read_bytes()
        checksum = hashlib.sha256(data).hexdigest()
        key = f"raw/{dataset}/dt={day.isoformat()}/rev={checksum[:12]}/source/{file.name}"
        store.put_bytes(key, data)
        sources = [{"key": key, "sha256": checksum, "bytes": len(data)}]
        how = f"file {file.name} (sha256 {checksum[:12]})"
        table, rejects, _ = parse_and_check(
            batch_id,
            checksum[:12],
            dataset,
            day,
            [DeclaredFile(file.name, _rows_in(file, data))],
            {file.name: data},
        )
        prepared = _prepared(current, checksum, table.num_rows + rejects.count, sources)
    if prepared.revision == current["revision"]:
        raise ValueError(f"batch {batch_id}: {how} gives the current content; nothing to do")
    write_aside(store, prepared, table, rejects)
    status = load_revision(con, store, prepared, run_id)
    if status == "ingested":
        outcome = gates.raw_gate(con, batch_id, prepared.revision, run_name=run_id)
        quality.record(con, outcome, run_id=run_id)
        status = "validated" if outcome.success else "quarantined"
        batches.set_status(
            con,
            batch_id,
            prepared.revision,
            status,
            run_id=run_id,
            detail=None if outcome.success else outcome.describe(),
        )
    result = {
        "batch_id": batch_id,
        "revision": prepared.revision,
        "supersedes": current["revision"],
        "how": how,
        "rows": prepared.rows_written,
        "rejected": rejects.count,
        "status": status,
        "stale_days": [],
    }
    if status == "quarantined":
        log.error(
            "batch %s revision %s (%s) fails its raw check and stays quarantined; release it with "
            "`mlpipeline batches release %s --revision %s` if it is right",
            batch_id,
            prepared.revision,
            how,
            batch_id,
            prepared.revision,
        )
        return result
    batches.record_event(
        con,
        batch_id,
        prepared.revision,
        batches.CORRECTED,
        f"supersedes {current['revision']}: {how}",
        run_id,
    )
    result["status"] = batches.promote(con, batch_id, prepared.revision, run_id=run_id)
    result["stale_days"] = batches.mark_stale(con, day)
    pending_rows.settle(con, day)
    log.info("batch %s: %s is now current (%s)", batch_id, prepared.revision, how)
    return result


def _prepared(
    current: dict[str, Any], checksum: str, declared: int, sources: Any
) -> PreparedRevision:
    return PreparedRevision(
        dataset=current["dataset"],
        day=current["dt"].isoformat(),
        batch_id=current["batch_id"],
        revision=checksum[:12],
        content_checksum=checksum,
        source_objects=sources if isinstance(sources, list) else _json_list(sources),
        rows_declared=int(declared),
        rows_read=0,
        rows_written=0,
        rows_rejected=0,
        object_key=None,
        rejects_key=None,
    )


def _json_list(value: Any) -> list[dict[str, Any]]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def _rows_in(file: Path, data: bytes) -> int:
    """The file's own row count stands in for the `_SUCCESS` declaration an operator's file
    does not have."""
    if file.suffix == ".parquet":
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return max(len(data.decode("utf-8", errors="replace").splitlines()) - 1, 0)
