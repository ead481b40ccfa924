"""The declared values of the categorical fields, in one place: the `categories` var of
dbt_project.yml. The row rules at ingestion, the raw GX suites and the dbt tests all read it, so
adding a merchant category is one edit.

A field is `open` or `closed`. A well-formed value outside an open field's list (a new merchant
category) is kept, reported by the raw suite and the dbt test as warnings, and scored by the
model as an unknown category; a value outside a closed list (a channel the model and the
features cannot interpret) is rejected at ingestion, naming batch, file, row and rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from mlpipeline.core.config import Settings

# What any value of a categorical field must look like (after trimming and lower-casing, as
# staging normalises it): short lower-case words, digits, dots, dashes and underscores.
WELL_FORMED = r"^[a-z0-9][a-z0-9_.\-]{0,39}$"


@dataclass(frozen=True)
class Category:
    field: str
    values: tuple[str, ...]
    closed: bool

    @property
    def rule(self) -> str:
        """The row rule a value breaks, as `meta.rejected_rows` and the logs name it."""
        if self.closed:
            return f"{self.field} in the declared list {list(self.values)}"
        return f"{self.field} is a well-formed code (lower-case letters, digits, . - _)"


@cache
def _declared(project_file: Path) -> dict[str, Category]:
    project = yaml.safe_load(project_file.read_text())
    fields = project["vars"]["categories"]
    return {
        name: Category(
            field=name,
            values=tuple(str(v) for v in spec["values"]),
            closed=spec["unknown"] == "reject",
        )
        for name, spec in fields.items()
    }


def declared(field: str, dbt_project_dir: Path | None = None) -> Category:
    """The declared list of a categorical field (`merchant_category`, `channel`, `reason_code`),
    from the configured dbt project (`DBT_PROJECT_DIR`) unless `dbt_project_dir` names one."""
    root = dbt_project_dir or Settings.from_env().dbt_project_dir
    return _declared(root / "dbt_project.yml")[field]
