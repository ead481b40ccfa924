"""The GX Data Context of one suite run or Data Docs build: ephemeral (no project folder, no
config files), its stores in memory unless a Data Docs site gives it a results folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.data_context.types.base import DataContextConfig


def ephemeral_context(config: DataContextConfig | None = None) -> EphemeralDataContext:
    """A fresh context; without `config`, in memory only (GX's default ephemeral context would
    create a temporary Data Docs folder)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )

    config = config or DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults())
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = {"globally": False}
    return context
