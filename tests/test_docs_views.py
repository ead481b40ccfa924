"""The Data Docs pages are GX's own, rendered with their Jinja templates compiled once a process
(mlpipeline.quality.docs_views), not once a page."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pandas as pd
import pytest

from mlpipeline import quality
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.quality import docs_views

pytestmark = pytest.mark.integration


def test_pages_after_the_first_compile_no_template_and_show_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    expectation = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}
    (suites / "tiny.json").write_text(json.dumps({"name": "tiny", "expectations": [expectation]}))
    monkeypatch.setenv(quality.SUITES_ENV, str(suites))
    docs = quality.DataDocs(tmp_path / "data_docs", LocalStore(tmp_path / "store"), index_limit=5)
    # The cache lives as long as the process: start from an empty one, whatever ran before here.
    monkeypatch.setattr(docs_views, "COMPILED", type(docs_views.COMPILED)())
    compiled: list[str | None] = []
    compile_template = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        compiled.append(name)
        return compile_template(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)

    def page(subject: str, values: list[int | None]) -> str:
        frame = pd.DataFrame({"a": values})
        outcome = quality.run_suite("tiny", frame, subject=subject, docs=docs, run_name="test")
        return outcome.page.local.read_text()

    page("raw.transactions-2026-03-10", [1, 2])
    first = len(compiled)
    second = page("raw.transactions-2026-03-11", [1, None])
    assert first > 10, "GX's page and index templates were expected to compile once"
    assert compiled[first:] == []
    # GX's rendering of the failed check, from the cached templates.
    assert "values must never be null" in second and "50% of 2 total rows" in second
    index = (docs.root / "index.html").read_text()
    assert "raw.transactions-2026-03-10" in index and "raw.transactions-2026-03-11" in index
