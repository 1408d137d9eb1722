"""Fixtures shared by the test modules (helpers they import live in tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import FIXTURES


@pytest.fixture
def worked_example_dir() -> Path:
    return FIXTURES / "worked_example"


# Dagster's in-memory event log: a run's events end with its process (the runs themselves are
# still recorded on disk)
IN_MEMORY_EVENT_LOG = """
event_log_storage:
  module: dagster._core.storage.event_log
  class: InMemoryEventLogStorage
"""


@pytest.fixture(autouse=True, scope="session")
def _dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """CLI runs in tests record into a throwaway instance, never the project's `.dagster_home/`:
    the project's dagster.yaml with the event log in memory, which spares each run most of its
    SQLite writes. Tests of what a run records use a home of their own, with the project's
    dagster.yaml as it is (tests/test_dagster_ops.py)."""
    import os

    from churn_pipeline.dagster_home import TEMPLATE

    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(TEMPLATE.read_text() + IN_MEMORY_EVENT_LOG)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield
    if previous is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = previous


@pytest.fixture(autouse=True)
def _no_instance_left_current() -> Iterator[None]:
    """Dagster's test contexts (schedule and sensor contexts on a test instance) can leave that
    instance's definitions-state storage as the current one after it is gone; the next test that
    loads definitions would then fail on it. Each test starts with none."""
    from dagster._core.storage.defs_state.base import _current_storage

    yield
    _current_storage.set(None)
