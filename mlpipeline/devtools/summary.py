"""What a day's run left behind, read back from DuckDB, MLflow and Redis (not from the run's own
logs), so the demo's closing summary is a check as much as a report."""

from __future__ import annotations

from datetime import date
from typing import Any

from mlpipeline.core.config import Settings
from mlpipeline.devtools.localredis import resolve_url


def _warehouse(day: date, settings: Settings) -> dict[str, Any]:
    from mlpipeline.warehouse import connect

    with connect(settings, read_only=True) as con:
        batches = con.execute(
            "SELECT batch_id, revision, status, rows_written, rows_rejected FROM meta.batches "
            "WHERE dt = ? ORDER BY batch_id, created_at",
            [day],
        ).fetchall()
        days = con.execute(
            "SELECT rows_to_score, rows_scored, no_model_yet, model_version, published, export_id "
            "FROM meta.days WHERE day = ?",
            [day],
        ).fetchall()
        scored = (
            con.execute(
                "SELECT count(*) FROM scores.transaction_scores WHERE dt = ?", [day]
            ).fetchall()[0][0]
            if _has_table(con, "scores", "transaction_scores")
            else 0
        )
        snapshot_rows = con.execute(
            "SELECT count(*) FROM features.customer_snapshot WHERE cutoff_date = ?", [day]
        ).fetchall()[0][0]
        history = con.execute(
            "SELECT count(DISTINCT dt), count(*) FROM raw.transactions_current"
        ).fetchall()[0]
    day_row = (
        dict(
            zip(
                [
                    "rows_to_score",
                    "rows_scored",
                    "no_model_yet",
                    "model_version",
                    "published",
                    "export_id",
                ],
                days[0],
                strict=True,
            )
        )
        if days
        else {}
    )
    return {
        "batches": [
            {"batch_id": b, "revision": r, "status": s, "rows_written": w, "rows_rejected": j}
            for b, r, s, w, j in batches
        ],
        "history": {"days": history[0], "transactions": history[1]},
        "snapshot_rows": snapshot_rows,
        "scores": {"rows_in_duckdb": scored, **day_row},
    }


def _has_table(con: Any, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
            "AND table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def _champion(settings: Settings) -> dict[str, Any] | None:
    from mlpipeline.training import model_registry

    ref = model_registry.resolve_champion(settings.mlflow_tracking_uri)
    if ref is None:
        return None
    run = model_registry.client(settings.mlflow_tracking_uri).get_run(ref.run_id)
    metrics = {
        k: round(v, 4)
        for k, v in sorted(run.data.metrics.items())
        if k.startswith(("val_", "test_")) and not k.startswith("test_at_threshold")
    }
    return {
        "name": ref.name,
        "version": ref.version,
        "training_cutoff": ref.training_cutoff,
        "decision_threshold": ref.decision_threshold,
        "candidate": run.data.tags.get("candidate"),
        "metrics": metrics,
    }


def _online(settings: Settings) -> dict[str, Any] | None:
    from mlpipeline import online

    return online.current_snapshot(resolve_url(settings))


def summarize(day: date, settings: Settings) -> dict[str, Any]:
    return {
        "day": day,
        "warehouse": _warehouse(day, settings),
        "champion": _champion(settings),
        "online": _online(settings),
    }
