"""The Data Docs site's page views: GX's own, with their Jinja templates compiled once a process.

GX makes a Jinja environment for every page it renders and compiles its ~33 templates again in
each: about 0.5 s a validation page, most of a small batch's check. These views keep GX's
environment and templates and only give it a shared in-memory bytecode cache (Jinja checks each
template's source against the cached code's checksum). The site's config names them through GX's
own `view` settings (mlpipeline.quality.docs).
"""

from __future__ import annotations

from typing import Any

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates by Jinja's key (template name and file), for this process."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED = _CompiledTemplates()


class _SharedCache:
    """Put the process's compiled templates under the view's own environment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - GX's signature
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = COMPILED


class PageView(_SharedCache, DefaultJinjaPageView):
    """A validation result's page."""


class IndexPageView(_SharedCache, DefaultJinjaIndexPageView):
    """The site's index page."""
