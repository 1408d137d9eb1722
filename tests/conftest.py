"""Fixtures shared by the test modules (helpers they import live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import FIXTURES


@pytest.fixture
def worked_example_dir() -> Path:
    return FIXTURES / "worked_example"
