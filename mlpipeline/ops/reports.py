"""What the Airflow UI links to: a task's MLflow run, its Data Docs page, the day's score table.

Plain functions over task results (the dicts the nightly's stages return), the object store and
the score table; `mlpipeline_airflow.ui_links` wires them to extra links and an HTTP route on the
API server. Pages are read from the object store, so they show wherever the workers wrote them.
"""

from __future__ import annotations

import html
import mimetypes
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlpipeline.core.config import Settings
from mlpipeline.core.days import parse_day
from mlpipeline.core.objectstore import ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    import pandas as pd

# Loaded by the Airflow plugin in every Airflow process: heavy imports (pandas, GX's module, delta)
# happen inside the functions that need them.


class ReportNotFound(LookupError):
    """No such report page (unknown or malformed path, or nothing published yet). `public` is
    what a browser may see: the full message names the store's location on the server."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


# --- links from task results ------------------------------------------------------------------


def mlflow_run_id(result: Any) -> str | None:  # noqa: ANN401 - any task's return value
    """The MLflow run a task result names: a trained candidate's run, or the run of the
    candidate an evaluation judged best."""
    if not isinstance(result, dict):
        return None
    if result.get("run_id"):
        return str(result["run_id"])
    best = (result.get("best"), result.get("best_version"))
    for evaluation in result.get("evaluations") or []:
        if (evaluation.get("name"), evaluation.get("version")) == best:
            return str(evaluation["run_id"])
    return None


def mlflow_run_url(ui_url: str, run_id: str) -> str:
    """The MLflow UI page of a run. MLflow's `#/runs/<id>` route opens the run under its
    experiment (`#/experiments/<experiment id>/runs/<id>`), so no tracking-server lookup is
    needed to build the link."""
    return f"{ui_url.rstrip('/')}/#/runs/{quote(run_id, safe='')}"


def data_docs_path(result: Any) -> str | None:  # noqa: ANN401 - any task's return value
    """The Data Docs page of a gate's result, relative to the Data Docs site."""
    from mlpipeline.quality import DOCS_PREFIX

    key = result.get("data_docs") if isinstance(result, dict) else None
    if not key or not str(key).startswith(DOCS_PREFIX):
        return None
    return str(key)[len(DOCS_PREFIX) :]


def scored_day(result: Any) -> tuple[str, int | None] | None:  # noqa: ANN401
    """(day, score table version) of a scoring result; the version is None for "no model yet"."""
    if not isinstance(result, dict) or "table_uri" not in result or not result.get("day"):
        return None
    version = result.get("table_version")
    return str(result["day"]), None if version is None else int(version)


def monitored_day(result: Any) -> str | None:  # noqa: ANN401 - any task's return value
    """The run day of a monitoring result (the nightly's `monitor` task)."""
    if not isinstance(result, dict) or not result.get("run_day") or "report" not in result:
        return None
    return str(result["run_day"])


# --- Data Docs over HTTP ----------------------------------------------------------------------


def read_data_docs(store: ObjectStore, path: str) -> tuple[bytes, str]:
    """A file of the Data Docs site (page, css, js) and its media type. Only plain relative paths
    inside the site are accepted, so no request reaches another key of the store."""
    from mlpipeline.quality import DOCS_PREFIX

    parts = PurePosixPath(path).parts
    if (
        not parts
        or path.startswith("/")
        or "\\" in path
        or any(part in {"", ".", ".."} for part in parts)
    ):
        raise ReportNotFound(f"not a Data Docs path: {path!r}")
    try:
        data = store.get_bytes(DOCS_PREFIX + "/".join(parts))
    except ObjectNotFound as exc:
        raise ReportNotFound(
            f"no Data Docs file {path!r} under {DOCS_PREFIX} in {store.url}: the gate that wrote "
            "it ran against another object store, or its page was not published",
            public=f"no Data Docs page {path!r}: its gate ran elsewhere or published nothing",
        ) from exc
    media_type = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return data, media_type


# --- the day's scores -------------------------------------------------------------------------


@dataclass(frozen=True)
class DayScores:
    day: str
    table_uri: str
    version: int
    rows: int
    models: list[str]
    histogram: list[tuple[float, float, int]]
    top: pd.DataFrame


def day_scores(
    settings: Settings, day: str, version: int | None = None, top: int = 10
) -> DayScores:
    """Day D's rows of the score table (at `version`, default the newest): count, model versions,
    a histogram of the scores and the highest-scored transactions."""
    import numpy as np
    from deltalake.exceptions import DeltaError

    from mlpipeline.scoring.score_table import (
        ScoreTableNotFound,
        open_score_table,
        score_table_location,
    )

    parsed = parse_day(day)
    location = score_table_location(settings)
    try:
        table = open_score_table(settings, version)
    except ScoreTableNotFound as exc:
        raise ReportNotFound(str(exc), public="no score table yet: no day has been scored") from exc
    except DeltaError as exc:  # delta-rs' error for a version the table does not have
        raise ReportNotFound(
            f"score table {location.uri} has no version {version}: {exc}",
            public=f"the score table has no version {version}",
        ) from exc
    frame = table.to_pandas(filters=[("dt", "=", parsed)])
    counts, edges = np.histogram(frame["score"], bins=10, range=(0.0, 1.0))
    models = sorted(set(frame["model_name"] + " v" + frame["model_version"].astype(str)))
    columns = ["transaction_id", "customer_id", "score", "decision", "model_version"]
    return DayScores(
        day=parsed.isoformat(),
        table_uri=location.uri,
        version=table.version(),
        rows=len(frame),
        models=models,
        histogram=[
            (float(lo), float(hi), int(n))
            for lo, hi, n in zip(edges, edges[1:], counts, strict=False)
        ],
        top=frame.nlargest(top, "score")[columns],
    )


def render_day_scores(scores: DayScores) -> str:
    """A small self-contained HTML page of `day_scores` (no scripts, no external assets)."""
    esc = html.escape
    peak = max((n for _, _, n in scores.histogram), default=0) or 1
    bars = "".join(
        f"<tr><td>{lo:.1f}–{hi:.1f}</td><td class='n'>{n}</td>"
        f"<td><div class='bar' style='width:{300 * n / peak:.0f}px'></div></td></tr>"
        for lo, hi, n in scores.histogram
    )
    top = scores.top.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0)
    models = ", ".join(scores.models) or "none (no row scored)"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Scores of {esc(scores.day)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:left}}
.n{{text-align:right}} .bar{{background:#3b82f6;height:12px}}</style></head>
<body><h1>Scores of {esc(scores.day)}</h1>
<table>
<tr><th>Score table</th><td>{esc(scores.table_uri)}</td></tr>
<tr><th>Delta version</th><td>{scores.version}</td></tr>
<tr><th>Rows scored</th><td>{scores.rows}</td></tr>
<tr><th>Model</th><td>{esc(models)}</td></tr>
</table>
<h2>Score distribution</h2><table>{bars}</table>
<h2>Highest scores</h2>{top}
</body></html>"""
