"""A run day's monitoring page: the day's checks and the trends of the last 60 run days.

Self-contained HTML (inline SVG charts, no script, no external asset), so the Airflow plugin
serves it as is and it opens offline. The trends are read from the metrics table, one point per
run day: drift share, score drift, decision-rate change, realized ROC / PR AUC with their
test values (a point measured on immature labels is drawn hollow), and training/serving skew
(the day's largest share of replayed requests differing, and the share left unmatched).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from mlpipeline.core.config import Settings
from mlpipeline.monitoring.checks import DRIFT_SHARE, INPUT_DRIFT, PREDICTION_DRIFT
from mlpipeline.monitoring.conf import MonitoringConf
from mlpipeline.monitoring.metrics_table import read_metrics
from mlpipeline.monitoring.realized import PENDING, REALIZED
from mlpipeline.monitoring.serving_skew import SERVING_SKEW, UNMATCHED
from mlpipeline.monitoring.summary import STATUS_ORDER, MonitoringSummary, text_cell

TREND_DAYS = 60
WIDTH, HEIGHT, PAD = 640, 150, 30
# (title, check, metric, the check whose levels are drawn; None: the version's test value if
# any). Metric None: the check's worst graded row (one with a threshold) of each run day.
TRENDS = (
    ("Input drift: share of inputs drifted", INPUT_DRIFT, DRIFT_SHARE, "input_drift"),
    ("Score drift: normed Wasserstein distance", PREDICTION_DRIFT, "score", "score_drift"),
    ("Decision rate: change from validation", PREDICTION_DRIFT, "decision_rate", "decision_rate"),
    ("Realized ROC AUC (hollow: labels not matured)", REALIZED, "roc_auc", None),
    ("Realized PR AUC (hollow: labels not matured)", REALIZED, "pr_auc", None),
    (
        "Serving skew: largest share of replayed requests differing (a feature, score or decision)",
        SERVING_SKEW,
        None,
        "serving_skew",
    ),
    (
        "Unmatched requests: share of logged requests with no batch row",
        SERVING_SKEW,
        UNMATCHED,
        None,
    ),
)
COLOURS = {"failed": "#dc2626", "warning": "#d97706", "no_reference": "#6b7280", "ok": "#16a34a"}


@dataclass(frozen=True)
class Trend:
    """One metric over the run days: (run day, value, status) points and its levels."""

    title: str
    points: list[tuple[date, float, str]]
    levels: dict[str, float]  # label -> horizontal line
    hollow: frozenset[date] = frozenset()  # run days measured on immature labels


@dataclass(frozen=True)
class MonitoringReport:
    summary: MonitoringSummary
    first_day: date
    trends: list[Trend]


def load_report(settings: Settings, run_day: date) -> MonitoringReport | None:
    """The run day's report; None when the day has no monitoring rows."""
    first = run_day - timedelta(days=TREND_DAYS - 1)
    history = read_metrics(settings, since=first, until=run_day)
    if history.empty:
        return None
    history["run_day"] = pd.to_datetime(history["run_day"]).dt.date
    today = history[history["run_day"] == run_day]
    if today.empty:
        return None
    checks = MonitoringConf.load().checks
    realized_levels = _test_values(today)
    trends = [
        Trend(
            title,
            _points(history, check, metric),
            {"warning": checks[graded].warning, "failure": checks[graded].failure}
            if graded
            else realized_levels.get(metric, {}),
            _immature(history) if check == REALIZED else frozenset(),
        )
        for title, check, metric, graded in TRENDS
    ]
    return MonitoringReport(MonitoringSummary.from_rows(today), first, trends)


def _points(history: pd.DataFrame, check: str, metric: str | None) -> list[tuple[date, float, str]]:
    """One point per run day: the metric's row, or (metric None) the check's largest graded
    value (the statuses of one check's rows follow their values)."""
    rows = history[history["check"] == check].dropna(subset=["value"])
    if metric is None:
        rows = rows.dropna(subset=["threshold"]).sort_values("value")
        rows = rows.drop_duplicates("run_day", keep="last")
    else:
        rows = rows[rows["feature_or_metric"] == metric]
    rows = rows.sort_values("run_day")
    return [(r.run_day, float(r.value), str(r.status)) for r in rows.itertuples()]


def _immature(history: pd.DataFrame) -> frozenset[date]:
    """The run days whose realized pool had partial labels (graded at its coverage)."""
    coverage = history[
        (history["check"] == REALIZED) & (history["feature_or_metric"] == "label_coverage")
    ]
    return frozenset(coverage.loc[coverage["value"] < 1.0, "run_day"])


def _test_values(today: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The version's test value of each realized metric, and its floor when one is set."""
    realized = today[today["check"] == REALIZED].set_index("feature_or_metric")
    found: dict[str, dict[str, float]] = {}
    for metric in ("roc_auc", "pr_auc"):
        lines = {}
        if metric in realized.index and pd.notna(realized.loc[metric, "threshold"]):
            lines["test"] = float(realized.loc[metric, "threshold"])
        if f"{metric}_floor" in realized.index:
            lines["floor"] = float(realized.loc[f"{metric}_floor", "threshold"])
        found[metric] = lines
    return found


def render(report: MonitoringReport) -> str:
    esc = html.escape
    summary = report.summary
    rows = summary.rows.copy()
    order = {status: n for n, status in enumerate(STATUS_ORDER)}
    rows["_order"] = rows["status"].map(order).fillna(len(order))
    rows = rows.sort_values(["_order", "check", "feature_or_metric"])
    table = "".join(
        f"<tr><td>{esc(str(r.check))}</td><td>{esc(str(r.feature_or_metric))}</td>"
        f"<td>{esc(text_cell(r.method))}</td><td class='n'>{_number(r.value)}</td>"
        f"<td class='n'>{_number(r.threshold)}</td>"
        f"<td style='color:{COLOURS.get(r.status, '#6b7280')}'>{esc(str(r.status))}</td></tr>"
        for r in rows.itertuples()
    )
    charts = "".join(
        f"<h3>{esc(t.title)}</h3>{_chart(t, report.first_day, summary.run_day)}"
        for t in report.trends
    )
    colour = COLOURS.get(summary.status, "#6b7280")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Monitoring of {summary.run_day}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:left}}
.n{{text-align:right}} pre{{background:#f3f4f6;padding:1em}}</style></head>
<body><h1>Monitoring of {summary.run_day}</h1>
<p>Scored day {summary.scored_day}, model version {esc(summary.model_version or "-")}:
<b style="color:{colour}">{esc(summary.status)}</b></p>
<pre>{esc(summary.text())}</pre>
<h2>Trends of the last {TREND_DAYS} run days ({report.first_day} to {summary.run_day})</h2>
{charts}
<h2>Every check of the day</h2>
<table><tr><th>Check</th><th>Feature or metric</th><th>Method</th><th>Value</th>
<th>Threshold</th><th>Status</th></tr>{table}</table>
</body></html>"""


def _number(value: object) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
    )


def _chart(trend: Trend, first: date, last: date) -> str:
    """An inline SVG line chart of the trend over [first, last], its levels dashed."""
    if not trend.points:
        return "<p>No value in this period.</p>"
    values = [v for _, v, _ in trend.points] + list(trend.levels.values())
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    days = max((last - first).days, 1)

    def x(day: date) -> float:
        return PAD + (WIDTH - 2 * PAD) * (day - first).days / days

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / span

    line = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v, _ in trend.points)
    dots = "".join(
        f"<circle cx='{x(d):.1f}' cy='{y(v):.1f}' r='3' stroke='{COLOURS.get(s, '#2563eb')}' "
        f"fill='{'white' if s == PENDING or d in trend.hollow else COLOURS.get(s, '#2563eb')}'>"
        f"<title>{d}: {v:.4g} ({s})</title></circle>"
        for d, v, s in trend.points
    )
    levels = "".join(
        f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{y(v):.1f}' y2='{y(v):.1f}' stroke='#9ca3af' "
        f"stroke-dasharray='4 3'/><text x='{WIDTH - PAD + 2}' y='{y(v) + 4:.1f}' "
        f"font-size='10'>{html.escape(label)} {v:.3g}</text>"
        for label, v in trend.levels.items()
    )
    axis = (
        f"<text x='{PAD}' y='{HEIGHT - 8}' font-size='10'>{first}</text>"
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - 8}' font-size='10' text-anchor='end'>{last}</text>"
        f"<text x='2' y='{y(high) + 4:.1f}' font-size='10'>{high:.3g}</text>"
        f"<text x='2' y='{y(low) + 4:.1f}' font-size='10'>{low:.3g}</text>"
    )
    return (
        f"<svg width='{WIDTH + 60}' height='{HEIGHT}' "
        f"role='img'><polyline points='{line}' fill='none' stroke='#2563eb'/>"
        f"{levels}{dots}{axis}</svg>"
    )
