"""Great Expectations quality gates, run on DataFrames with GX 1.x, and their Data Docs.

Suites are version-controlled JSON files in `mlpipeline/conf/expectations/` (or the folder named
by `MLPIPELINE_EXPECTATIONS_DIR`, for a deployment that keeps its own) that analysts read and
edit. Thresholds inside them are `{"$PARAMETER": name}` references that the gates fill from
`conf/pipeline.yaml` and from the run (the day, declared row counts, recent history).

Two keys beside GX's own decide whether an expectation is evaluated at all: `min_rows` (an
integer or a parameter reference; below it a distribution check says nothing, and an empty
day has no mean) and any referenced parameter that is None (e.g. no recent history to compare
with). Skipped expectations are logged, not recorded.

Severity `warning` is logged and recorded but does not fail the gate: GX itself counts any
failed expectation as a failed suite, so the gate decides on critical failures only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import pandas as pd

from mlpipeline.core.config import CONF_DIR, Settings, pipeline_conf
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.quality import data_docs_assets
from mlpipeline.warehouse.meta import ensure_meta, utcnow

log = logging.getLogger(__name__)

SUITES_ENV = "MLPIPELINE_EXPECTATIONS_DIR"
DOCS_PREFIX = "reports/data_docs/"
_SITE = "data_docs"
_RESULTS = "results"
_STATIC_MARKER = "static/styles/data_docs_default_styles.css"
_SAMPLE_VALUES = 5
_KWARGS_NOT_SHOWN = {"batch_id", "column", "column_A", "column_B", "result_format"}


class QualityGateFailed(RuntimeError):
    """A suite's critical expectations failed; the message lists them."""

    def __init__(self, outcome: CheckOutcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.describe())


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    check: str
    column: str | None
    severity: str
    success: bool
    observed: str
    expected: str

    @property
    def name(self) -> str:
        """What it checks in words (the suite's meta.notes), else its type and column."""
        return self.check or (
            f"{self.expectation} on {self.column}" if self.column else self.expectation
        )

    @property
    def label(self) -> str:
        """What `meta.validation_results.expectation` holds: the GX type and what it checks."""
        return f"{self.expectation}: {self.check}" if self.check else self.expectation


@dataclass(frozen=True)
class DocsPage:
    """Where the run's Data Docs page is: a key in the object store and the local copy."""

    key: str
    local: Path

    def describe(self) -> str:
        return f"object store {self.key} (local copy {self.local})"


@dataclass
class CheckOutcome:
    suite: str
    subject: str
    rows: int
    results: list[ExpectationOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    page: DocsPage | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity != "critical"]

    @property
    def success(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        passed = len(self.results) - len(self.failures) - len(self.warnings)
        lines = [
            f"suite '{self.suite}' on {self.subject} ({self.rows} rows): {passed} passed, "
            f"{len(self.failures)} failed, {len(self.warnings)} warnings, "
            f"{len(self.skipped)} not evaluated"
        ]
        for label, items in (("FAILED", self.failures), ("WARNING", self.warnings)):
            lines += [
                f"  {label} {r.label}"
                + (f" [column {r.column}]" if r.column else "")
                + f": {r.observed}"
                + (f"; expected {r.expected}" if r.expected else "")
                for r in items
            ]
        lines += [f"  not evaluated: {reason}" for reason in self.skipped]
        if self.page:
            lines.append(f"  Data Docs: {self.page.describe()}")
        return "\n".join(lines)


def quality_conf() -> dict[str, Any]:
    """The `quality:` section of conf/pipeline.yaml (thresholds the suites reference)."""
    return pipeline_conf()["quality"]


def suites_dir() -> Path:
    value = os.environ.get(SUITES_ENV)
    return Path(value).expanduser().resolve() if value else CONF_DIR / "expectations"


def load_suite_definition(name: str) -> dict[str, Any]:
    path = suites_dir() / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no expectation suite {name!r}: expected {path} (the folder comes from "
            f"{SUITES_ENV} when set, else mlpipeline/conf/expectations)"
        )
    return json.loads(path.read_text())


def suite_columns(name: str) -> set[str]:
    """Columns a suite reads: the gates load only these from large revisions."""
    columns: set[str] = set()
    for item in load_suite_definition(name)["expectations"]:
        kwargs = item.get("kwargs", {})
        columns.update(kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs)
    return columns


def _parameter_refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return [value["$PARAMETER"]]
        return [ref for v in value.values() for ref in _parameter_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in _parameter_refs(v)]
    return []


def _skip_reason(item: dict[str, Any], rows: int, parameters: dict[str, Any]) -> str | None:
    """Why an expectation cannot be evaluated on this frame, or None to evaluate it."""
    name = _check_name(item)
    refs = _parameter_refs(item.get("kwargs", {}))
    unknown = [r for r in refs if r not in parameters]
    if unknown:
        raise KeyError(
            f"expectation {name!r} references parameters {unknown} the gate does not provide; "
            f"provided: {sorted(parameters)}"
        )
    missing = [r for r in refs if parameters[r] is None]
    if missing:
        return f"{name}: no value for {missing} (e.g. no recent history to compare with)"
    min_rows = item.get("min_rows", 0)
    if isinstance(min_rows, dict):
        min_rows = parameters[min_rows["$PARAMETER"]]
    if rows < int(min_rows):
        return f"{name}: needs at least {min_rows} rows, the data has {rows}"
    return None


def _check_name(item: dict[str, Any]) -> str:
    check = item.get("meta", {}).get("notes", "")
    column = item.get("kwargs", {}).get("column")
    return check or (f"{item['type']} on {column}" if column else item["type"])


def _observed(result: dict[str, Any]) -> str:
    """Observed value plus a few offending values by position, never whole records."""
    parts = []
    if "observed_value" in result:
        parts.append(f"observed {_plain(result['observed_value'])!r}")
    if "unexpected_count" in result:
        count = result["unexpected_count"]
        text = f"{count} unexpected of {result.get('element_count', '?')}"
        if count:
            values = [_plain(v) for v in result.get("partial_unexpected_list", [])]
            rows = result.get("partial_unexpected_index_list", [])
            text += (
                f" ({result.get('unexpected_percent', 0):.2f}%), e.g. "
                f"{values[:_SAMPLE_VALUES]!r} at rows {rows[:_SAMPLE_VALUES]!r}"
            )
        parts.append(text)
    return "; ".join(parts) or "no details"


def _plain(value: Any) -> Any:
    """numpy / pandas scalars as plain Python values, so messages read naturally."""
    if isinstance(value, pd.Timestamp):
        return str(value)
    return value.item() if hasattr(value, "item") else value


def _expected(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in _KWARGS_NOT_SHOWN and v is not None}
    return ", ".join(f"{k}={_plain(v)!r}" for k, v in shown.items())


def _view_class(base: type) -> type:
    """A GX Data Docs view whose Jinja templates are compiled once per machine and user, not
    once per build: GX makes a new Jinja environment for every build, and compiling the
    templates was most of a build's time. Jinja's bytecode cache (in its private per-user
    temporary folder) is keyed by each template's source."""

    class View(base):
        def __init__(self, **kwargs: Any) -> None:
            from jinja2 import FileSystemBytecodeCache

            super().__init__(**kwargs)
            self.env.bytecode_cache = FileSystemBytecodeCache()

    View.__name__ = View.__qualname__ = f"Cached{base.__name__}"
    return View


_CACHED_VIEWS = {
    "CachedDefaultJinjaPageView": "DefaultJinjaPageView",
    "CachedDefaultJinjaIndexPageView": "DefaultJinjaIndexPageView",
}


def __getattr__(name: str) -> type:
    """GX instantiates views by module and class name; they are made on first use so that
    importing this module does not import GX."""
    if name not in _CACHED_VIEWS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from great_expectations.render import view

    cls = _view_class(getattr(view, _CACHED_VIEWS[name]))
    globals()[name] = cls
    return cls


class DataDocs:
    """GX's site builder on a local folder, mirrored to the object store under
    `reports/data_docs/`.

    The site's validation results (GX JSON) live beside it in `results/`, and are mirrored
    too: before a build the folder fetches the results and pages other workers published, so
    the index lists every run whichever machine ran it. Only the files a build wrote are
    uploaded; the 4 MB of static assets once per store.
    """

    def __init__(self, root: Path, store: ObjectStore, *, index_limit: int) -> None:
        self.root = root
        self.store = store
        self.index_limit = index_limit

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore) -> DataDocs:
        conf = quality_conf()["data_docs"]
        return cls(settings.data_dir / "data_docs", store, index_limit=int(conf["index_limit"]))

    def context_config(self) -> Any:  # noqa: ANN401 - GX's DataContextConfig
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
        )

        defaults = InMemoryStoreBackendDefaults()
        stores = dict(defaults.stores)
        stores[defaults.validation_results_store_name] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(self.root / _RESULTS),
            },
        }
        site = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(self.root),
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": self.index_limit,
                "view": {"module_name": __name__, "class_name": "CachedDefaultJinjaIndexPageView"},
            },
            # Validation pages only: the suites themselves are the JSON files in git, and
            # rendering every suite on every run would triple the build time.
            "site_section_builders": {
                "expectations": "None",
                "profiling": "None",
                "validations": {
                    "view": {"module_name": __name__, "class_name": "CachedDefaultJinjaPageView"}
                },
            },
        }
        return DataContextConfig(
            store_backend_defaults=defaults, stores=stores, data_docs_sites={_SITE: site}
        )

    def fetch_published(self) -> None:
        """Download the validation results and pages other runs published that this folder
        lacks: the index lists a run only when both are here."""
        fetched = 0
        for section in (_RESULTS, "validations"):
            for key in self.store.list(f"{DOCS_PREFIX}{section}/"):
                local = self.root / key[len(DOCS_PREFIX) :]
                if not local.exists():
                    self.store.download(key, local)
                    fetched += 1
        if fetched:
            log.info("Data Docs: fetched %d published files from the object store", fetched)

    def build(self, context: Any, result_id: Any, since_ns: int) -> DocsPage:  # noqa: ANN401
        """Render the run's page and the index; upload what was written."""
        context.build_data_docs(site_names=[_SITE], resource_identifiers=[result_id])
        url = context.get_docs_sites_urls(resource_identifier=result_id, site_name=_SITE)[0]
        local = Path(unquote(urlparse(url["site_url"]).path))
        page = DocsPage(key=DOCS_PREFIX + local.relative_to(self.root).as_posix(), local=local)
        self._localize([local, self.root / "index.html"])
        self._upload(since_ns)
        return page

    def results(self) -> set[tuple[str, ...]]:
        """GX keys (suite, run name, run time, batch identifier) of every validation result
        this folder or the object store holds."""
        found = {
            path.relative_to(self.root / _RESULTS).as_posix()
            for path in (self.root / _RESULTS).rglob("*.json")
        }
        found |= {
            key[len(f"{DOCS_PREFIX}{_RESULTS}/") :]
            for key in self.store.list(f"{DOCS_PREFIX}{_RESULTS}/")
            if key.endswith(".json")
        }
        return {tuple(name.removesuffix(".json").split("/")) for name in found}

    def delete_results(self, keys: list[tuple[str, ...]]) -> int:
        """Delete validation results and their pages, here and in the object store; the index
        still lists them until `rebuild_index`. Returns the files deleted."""
        deleted = 0
        for key in keys:
            relative = "/".join(key)
            for name in (f"{_RESULTS}/{relative}.json", f"validations/{relative}.html"):
                local = self.root / name
                if local.exists():
                    local.unlink()
                    deleted += 1
                if self.store.exists(DOCS_PREFIX + name):
                    self.store.delete(DOCS_PREFIX + name)
                    deleted += 1
        return deleted

    def rebuild_index(self) -> None:
        """Re-render the index from the results the folder and the object store hold, and
        publish it (GX builds an index only along with a page: the newest one is re-rendered)."""
        from great_expectations.data_context.types.resource_identifiers import (
            ValidationResultIdentifier,
        )

        self.fetch_published()
        keys = self.results()
        if not keys:
            return
        newest = max(keys, key=lambda key: key[-2])
        started_ns = time.time_ns()
        _context(self).build_data_docs(
            site_names=[_SITE], resource_identifiers=[ValidationResultIdentifier.from_tuple(newest)]
        )
        self._localize([self.root / "index.html"])
        self._upload(started_ns)

    def _localize(self, pages: list[Path]) -> None:
        """Point the pages this build wrote at the site's own copies of their CDN assets (the
        pages named, not a walk of a site that grows with every run)."""
        if not data_docs_assets.install(self.root):
            return
        for path in pages:
            depth = len(path.relative_to(self.root).parts) - 1
            html = path.read_text(encoding="utf-8")
            path.write_text(data_docs_assets.localize(html, "../" * depth or "./"), "utf-8")

    def _upload(self, since_ns: int) -> None:
        # The vendored assets' marker once they are in the site: a store published before them
        # gets the whole static folder again.
        vendored = f"{data_docs_assets.VENDOR}/.complete"
        marker = vendored if (self.root / vendored).exists() else _STATIC_MARKER
        static_missing = not self.store.exists(DOCS_PREFIX + marker)
        uploaded = 0
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(self.root).as_posix()
            if relative.startswith("static/"):
                if not static_missing:
                    continue
            elif path.stat().st_mtime_ns < since_ns:
                continue
            self.store.put_file(DOCS_PREFIX + relative, path)
            uploaded += 1
        log.info("Data Docs: uploaded %d files to %s", uploaded, DOCS_PREFIX)


def _context(docs: DataDocs | None) -> Any:  # noqa: ANN401 - GX's context type is internal
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    if docs is None:
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
        )

        # In memory only: GX's default ephemeral context would create a temporary docs folder.
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults())
    else:
        config = docs.context_config()
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = {"globally": False}
    return context


def _gx_suite(name: str, items: list[dict[str, Any]]) -> Any:  # noqa: ANN401
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = [
        ExpectationConfiguration(
            type=item["type"],
            kwargs=item.get("kwargs", {}),
            meta=item.get("meta", {}),
            severity=item.get("severity", "critical"),
        ).to_domain_obj()
        for item in items
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _run_name(value: str) -> str:
    """A run name that is safe as a path segment in every store (Airflow run ids hold ':+')."""
    return re.sub(r"[^A-Za-z0-9._@=-]", "_", value)


def run_suite(
    name: str,
    df: pd.DataFrame,
    *,
    subject: str,
    parameters: dict[str, Any] | None = None,
    docs: DataDocs | None = None,
    run_name: str | None = None,
) -> CheckOutcome:
    """Validate a DataFrame against a suite file; never raises for failed expectations.

    With `docs`, the result is kept in the Data Docs site and the run's page is built and
    published; `outcome.page` says where.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    parameters = parameters or {}
    definition = load_suite_definition(name)
    outcome = CheckOutcome(suite=name, subject=subject, rows=len(df))
    evaluated = []
    for item in definition["expectations"]:
        reason = _skip_reason(item, len(df), parameters)
        if reason:
            outcome.skipped.append(reason)
        else:
            evaluated.append({k: v for k, v in item.items() if k != "min_rows"})

    if docs is not None:
        docs.fetch_published()
    started_ns = time.time_ns()
    context = _context(docs)
    suite = context.suites.add(_gx_suite(definition["name"], evaluated))
    asset = _run_name(subject)
    batch_def = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(asset)
        .add_batch_definition_whole_dataframe("whole")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation", data=batch_def, suite=suite)
    )
    run_id = RunIdentifier(run_name=_run_name(run_name or subject), run_time=datetime.now(UTC))
    result = validation.run(
        batch_parameters={"dataframe": df},
        expectation_parameters=parameters,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": _SAMPLE_VALUES},
        run_id=run_id,
    )
    for item in result.results:
        config = item.expectation_config
        outcome.results.append(
            ExpectationOutcome(
                expectation=config.type,
                check=str((config.meta or {}).get("notes", "")),
                column=config.kwargs.get("column") or config.kwargs.get("column_A"),
                severity=str(getattr(config.severity, "value", config.severity)).lower(),
                success=bool(item.success),
                observed=_observed(item.result or {}),
                expected=_expected(config.kwargs),
            )
        )
    if docs is not None:
        result_id = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=definition["name"]),
            run_id=run_id,
            batch_identifier=f"frames-{asset}",
        )
        outcome.page = docs.build(context, result_id, started_ns)
    log.log(logging.INFO if outcome.success else logging.ERROR, "%s", outcome.describe())
    return outcome


def record(con: duckdb.DuckDBPyConnection, outcome: CheckOutcome, *, run_id: str | None) -> None:
    """Store every evaluated expectation's result so a reader can see which checks a subject
    (a batch revision, a cutoff, a training cutoff) passed."""
    ensure_meta(con)
    now = utcnow()
    con.executemany(
        "INSERT INTO meta.validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                outcome.subject,
                outcome.suite,
                r.label,
                r.column,
                r.severity,
                r.success,
                r.observed if not r.success else f"ok: {r.observed}",
                run_id,
                now,
            )
            for r in outcome.results
        ],
    )
