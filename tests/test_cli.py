"""The `churn-pipeline` command, as a user runs it: a real process, exit codes and one-line errors."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import write_raw

CLI = [sys.executable, "-m", "churn_pipeline.cli"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_generate_then_run_end_to_end(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generated = _run("generate", "--out", str(raw), "--customers", "400", "--months", "12", "--messy-share", "0.02", "--format", "mixed")
    assert generated.returncode == 0, generated.stderr
    result = _run(
        "run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts"),
        "--timezone", "Europe/Berlin",
    )
    assert result.returncode == 0, result.stderr
    assert "marts/cohort_retention" in result.stdout and "rows" in result.stdout
    assert "checks passed" in result.stdout
    for table in ("cohort_retention", "retention_curve", "high_risk_months"):
        assert pl.read_parquet(tmp_path / "marts" / f"{table}.parquet").height > 0
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        schemas = {row[0] for row in conn.sql("select schema_name from information_schema.schemata").fetchall()}
        assert {"raw", "staging", "marts"} <= schemas
        assert conn.sql("select count(*) from marts.quarantine").fetchall()[0][0] > 0


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({"orders.csv": "order_id,customer_id,amount\no1,c1,1\n"}, [], "orders.csv: required column 'ordered_at' is missing"),
        ({"orders.csv": "order_id,customer_id,ordered_at,amount\n"}, ["--timezone", "Mars/Base"], "--timezone: unknown time zone 'Mars/Base'"),
        ({"orders.csv": "order_id,customer_id,ordered_at,amount\n"}, ["--as-of", "soon"], "--as-of: cannot read 'soon'"),
    ],
)
def test_user_mistakes_get_one_clear_line(tmp_path: Path, files: dict, args: list[str], message: str) -> None:
    raw = write_raw(tmp_path / "raw", files)
    result = _run("run", "--raw-dir", str(raw), "--warehouse", str(tmp_path / "w.duckdb"), "--output-dir", str(tmp_path / "marts"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "w.duckdb").exists() and not (tmp_path / "marts").exists()  # nothing published


def test_missing_raw_directory(tmp_path: Path) -> None:
    result = _run("run", "--raw-dir", str(tmp_path / "missing"), "--warehouse", str(tmp_path / "w.duckdb"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"churn-pipeline: error: raw directory {tmp_path / 'missing'} does not exist"


def test_defaults_point_at_the_embedded_sample(tmp_path: Path) -> None:
    from churn_pipeline.cli import build_parser

    args = build_parser().parse_args(["run"])
    assert (args.raw_dir, args.warehouse, args.output_dir) == ("data/raw", "data/warehouse.duckdb", "data/marts")
    sample = Path(__file__).parents[1] / "data" / "raw"
    assert any(sample.glob("subscription_events*")) and any(sample.glob("orders*"))


def test_long_lived_imports_pause_the_collector_only_when_the_command_is_the_whole_process() -> None:
    from churn_pipeline.cli import _long_lived_imports

    before = gc.get_freeze_count()
    with _long_lived_imports(whole_process=False):
        assert gc.isenabled()
    assert gc.get_freeze_count() == before
    try:
        with _long_lived_imports(whole_process=True):
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
        gc.enable()
