"""Great Expectations quality gates, run on DataFrames with GX 1.x, and their Data Docs.

The stage's public interface; one module per job:

- `suites`: the suite files, their parameters, which expectations a frame can be judged by;
- `runs`: a suite run through a GX Checkpoint (with Data Docs as its action);
- `outcome`: what a run found, in the terms of gates, logs and alerts;
- `results`: outcomes recorded in the warehouse;
- `docs`: the Data Docs site, its local folder and its object store mirror;
- `context`: the ephemeral GX context of a run or build;
- `data_docs_assets`: the pages' styles and scripts, served by the site instead of CDNs.

Importing the package does not import GX: each module imports it where it is used.
"""

from mlpipeline.quality.docs import DOCS_PREFIX, DataDocs, DocsPage
from mlpipeline.quality.outcome import CheckOutcome, ExpectationOutcome, QualityGateFailed
from mlpipeline.quality.results import record
from mlpipeline.quality.runs import run_suite
from mlpipeline.quality.suites import (
    SUITES_ENV,
    load_suite_definition,
    quality_conf,
    suite_columns,
    suites_dir,
)

__all__ = [
    "DOCS_PREFIX",
    "SUITES_ENV",
    "CheckOutcome",
    "DataDocs",
    "DocsPage",
    "ExpectationOutcome",
    "QualityGateFailed",
    "load_suite_definition",
    "quality_conf",
    "record",
    "run_suite",
    "suite_columns",
    "suites_dir",
]
