"""The Dagster code location: every definition in `churn_pipeline/defs/`, loaded as Dagster's
project scaffold does."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
