"""Building a data set on both engines and comparing every table (tests/test_spark*.py): every
SQL model, every published table and the accounting queries, integers and text exactly, floats
within 1e-9 relative, nulls equal, in any row order."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from churn_pipeline.defs.marts import compute_marts
from churn_pipeline.lib import dialects, quality, spark_build, sql_models
from churn_pipeline.lib.settings import PipelineSettings
from churn_pipeline.lib.table_docs import TABLES
from churn_pipeline.lib.warehouse_build import build_warehouse
from churn_pipeline.lib.warehouse_tables import SparkTables

ROOT = Path(__file__).resolve().parents[1]


def build_both(spark, raw_dir: Path, work: Path, **settings: object) -> duckdb.DuckDBPyConnection:
    """DuckDB's warehouse, and Spark's from the same delivery files (in `work`), each with every
    published table computed by the marts' polars functions from that engine's tables."""
    conn = duckdb.connect()
    pipeline_settings = PipelineSettings(raw_dir=str(raw_dir), **settings)
    build_warehouse(conn, pipeline_settings)
    compute_marts(conn, pipeline_settings)
    spark_build.build_warehouse(spark, pipeline_settings, work / "spark-warehouse")
    compute_marts(SparkTables(spark, work / "spark-warehouse"), pipeline_settings)
    return conn


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Instants as UTC microseconds, whole numbers as Int64, others Float64, rows sorted."""
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None:
                column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            column = column.dt.cast_time_unit("us")
        elif isinstance(dtype, pl.Decimal) and dtype.scale == 0:
            column = column.cast(pl.Int64)  # DuckDB's sum of integers is a HUGEINT, Spark's a BIGINT
        elif isinstance(dtype, pl.Decimal) or dtype in (pl.Float32, pl.Float64):
            column = column.cast(pl.Float64)
        elif dtype.is_integer():
            column = column.cast(pl.Int64)
        columns.append(column)
    frame = frame.select(columns)
    return frame.sort(frame.columns, nulls_last=True)


def differences(spark_frame: pl.DataFrame, duckdb_frame: pl.DataFrame) -> list[str]:
    got, want = comparable(spark_frame), comparable(duckdb_frame)
    if got.columns != want.columns:
        return [f"columns {got.columns} != {want.columns}"]
    if got.height != want.height:
        return [f"{got.height} rows != {want.height}"]
    problems = []
    for name in got.columns:
        a, b = got[name], want[name]
        if not a.is_null().equals(b.is_null()):
            problems.append(f"{name}: nulls differ")
        elif a.dtype == pl.Float64:
            both = pl.DataFrame({"a": a, "b": b}).drop_nulls()
            if not ((both["a"] - both["b"]).abs() <= 1e-9 * both["b"].abs().clip(lower_bound=1.0)).all():
                problems.append(f"{name}: values differ")
        elif a.dtype != b.dtype or not a.equals(b):
            problems.append(f"{name}: values differ ({a.dtype} vs {b.dtype})")
    return problems


PUBLISHED = [table.name for table in TABLES if table.parquet]


def assert_same_tables(spark, conn: duckdb.DuckDBPyConnection) -> None:
    """Every SQL model, every published table and the accounting agree between the engines."""
    checked, failures = 0, {}
    tables = [model.table for model in sql_models.load_models()]
    tables += [f"marts.{name}" for name in PUBLISHED if f"marts.{name}" not in tables]
    for table in tables:
        problems = differences(pl.from_arrow(spark.table(table).toArrow()), conn.sql(f"from {table}").pl())
        checked += 1
        if problems:
            failures[table] = problems
    # the accounting: per source raw rows = loaded + quarantined, per file rows read = staged + unreadable
    manifest = "select source, source_file, delivery_month, size_bytes, sha256, rows_read, unreadable_rows from raw.load_manifest"
    for name, sql in {
        "reconciliation": quality.RECONCILIATION_SQL,
        "file reconciliation": quality.FILE_RECONCILIATION_SQL,
        "quarantine reasons": quality.QUARANTINE_REASONS_SQL,
        "load manifest": manifest,
    }.items():
        problems = differences(pl.from_arrow(spark.sql(dialects.to_spark(sql)).toArrow()), conn.sql(sql).pl())
        checked += 1
        if problems:
            failures[name] = problems
    assert not failures
    assert checked == len(sql_models.load_models()) + len(PUBLISHED) - 1 + 4  # the quarantine is a model
