"""The project's Dagster instance: `DAGSTER_HOME` when it is set (Dagster's convention), else
`.dagster_home/` in the working directory, created with the project's `dagster.yaml`.

`churn-pipeline run` records its runs there and `make dev` serves it, so the UI shows both.
`python -m churn_pipeline.dagster_home` creates the home if needed and prints its path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

PROJECT_HOME = Path(".dagster_home")
TEMPLATE = Path(__file__).with_name("dagster.yaml")


def dagster_home() -> Path:
    """The instance directory, created (with the project's dagster.yaml) when it is missing."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    return home


def project_instance() -> dg.DagsterInstance:
    """The persistent instance in `dagster_home()`; close it (or use it as a context manager)."""
    return dg.DagsterInstance.from_config(str(dagster_home()))
