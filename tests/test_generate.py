"""The generator: deterministic per seed, with bad rows that reconcile exactly with the quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn_pipeline.lib.generate import GeneratorConfig, generate
from helpers import Built


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=300, months=12, seed=1)
    generate(tmp_path / "a", config)
    generate(tmp_path / "b", config)
    generate(tmp_path / "c", GeneratorConfig(customers=300, months=12, seed=2))
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")
    assert (
        _contents(tmp_path / "a")["subscription_events_part1.csv"] != _contents(tmp_path / "c")["subscription_events_part1.csv"]
    )


@pytest.mark.parametrize("file_format", ["csv", "mixed"])
def test_messy_rows_reconcile_with_the_manifest(tmp_path: Path, file_format: str) -> None:
    generate(tmp_path, GeneratorConfig(customers=800, months=12, seed=4, messy_share=0.03, file_format=file_format))
    expected = json.loads((tmp_path / "_generated_manifest.json").read_text())["quarantine_expected"]
    built = Built(tmp_path)
    for source, reasons in expected.items():
        got = dict(built.sql("select reason, count(*) from marts.quarantine where source = $s group by 1", {"s": source}).rows())
        assert got == reasons, source
        raw = built.sql(f"select count(*) from raw.{source}").item()
        loaded = built.sql(f"select count(*) from staging.int_{source}").item()
        assert raw == loaded + sum(reasons.values())


def test_clean_generated_data_has_no_lifecycle_contradictions(tmp_path: Path) -> None:
    generate(tmp_path, GeneratorConfig(customers=2000, months=18, seed=9))
    assert Built(tmp_path).sql("select count(*) from marts.quarantine").item() == 0
