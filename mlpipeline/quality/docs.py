"""The Data Docs site: GX's own site builder on a local folder, updated by each run's
Checkpoint (`UpdateDataDocsAction`) and mirrored to the object store under `reports/data_docs/`,
where the Airflow plugin and the scoring API serve it from.

The site's validation results (GX JSON) live beside it in `results/`, and are mirrored too:
before a build the folder fetches the results and pages other workers published, so the index
lists every run whichever machine ran it. Only the files a build wrote are uploaded; the 4 MB of
static assets once per store. The pages GX wrote are pointed at the site's own copies of their
CDN assets (`data_docs_assets`), so they work offline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import ObjectStore
from mlpipeline.quality import data_docs_assets
from mlpipeline.quality.context import ephemeral_context
from mlpipeline.quality.suites import quality_conf

if TYPE_CHECKING:
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.data_context.types.base import DataContextConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

log = logging.getLogger(__name__)

DOCS_PREFIX = "reports/data_docs/"
_SITE = "data_docs"
_RESULTS = "results"
# GX's page views, with templates compiled once a process.
_VIEWS = "mlpipeline.quality.docs_views"
_STATIC_MARKER = "static/styles/data_docs_default_styles.css"


@dataclass(frozen=True)
class DocsPage:
    """Where the run's Data Docs page is: a key in the object store and the local copy."""

    key: str
    local: Path

    def describe(self) -> str:
        return f"object store {self.key} (local copy {self.local})"


class DataDocs:
    """One Data Docs site: its local folder, the object store it is mirrored to, and how many
    validation results its index lists."""

    def __init__(self, root: Path, store: ObjectStore, *, index_limit: int) -> None:
        self.root = root
        self.store = store
        self.index_limit = index_limit

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore) -> DataDocs:
        conf = quality_conf()["data_docs"]
        return cls(settings.data_dir / "data_docs", store, index_limit=int(conf["index_limit"]))

    def context_config(self) -> DataContextConfig:
        """Stores in memory, but validation results in the site's `results/` folder, and the
        site itself on the local folder."""
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
                "view": {"module_name": _VIEWS, "class_name": "IndexPageView"},
            },
            # Validation pages only: the suites themselves are the JSON files in git, and
            # rendering every suite on every run would triple the build time.
            "site_section_builders": {
                "expectations": "None",
                "profiling": "None",
                "validations": {"view": {"module_name": _VIEWS, "class_name": "PageView"}},
            },
        }
        return DataContextConfig(
            store_backend_defaults=defaults, stores=stores, data_docs_sites={_SITE: site}
        )

    def update_action(self) -> UpdateDataDocsAction:
        """The Checkpoint action that renders a run's page and the index into this site."""
        from great_expectations.checkpoint import UpdateDataDocsAction

        return UpdateDataDocsAction(name="update_data_docs", site_names=[_SITE])

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

    def publish(
        self, context: EphemeralDataContext, result_id: ValidationResultIdentifier, since_ns: int
    ) -> DocsPage:
        """Localize the run's page and the index the Checkpoint's action wrote, and upload
        what the build wrote since `since_ns`."""
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
        ephemeral_context(self.context_config()).build_data_docs(
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
