"""What the report pages tell a browser when a page is missing: no path on the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipeline.core.config import Settings
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.ops import reports

pytestmark = pytest.mark.unit


def test_missing_pages_name_no_server_path(tmp_path: Path) -> None:
    settings = Settings.under(tmp_path / "data")
    with pytest.raises(reports.ReportNotFound) as scores:
        reports.day_scores(settings, "2026-03-10")
    with pytest.raises(reports.ReportNotFound) as docs:
        reports.read_data_docs(LocalStore(tmp_path / "store"), "index.html")
    for error in (scores.value, docs.value):
        assert str(tmp_path) in str(error)  # the server's log keeps the location
        assert str(tmp_path) not in error.public and "/" not in error.public.split("'")[0]
