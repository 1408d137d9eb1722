"""Writing published tables: to the warehouse `marts` schema and as Parquet, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from churn_pipeline.lib.identifiers import qualified, validate_identifier


class OutputPathError(ValueError):
    pass


def output_path(output_dir: Path, table: str) -> Path:
    """`<output_dir>/<table>.parquet`, refused unless it resolves inside output_dir."""
    validate_identifier(table, "table")
    root = output_dir.resolve()
    path = (root / f"{table}.parquet").resolve()
    if path.parent != root:
        raise OutputPathError(f"output path {path} is outside the output directory {root}")
    return path


def write_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pl.DataFrame) -> None:
    """Replace `schema.table` with the frame's rows (handed over as Arrow)."""
    arrow = frame.to_arrow()
    conn.register("frame_to_write", arrow)
    try:
        conn.execute(f"create or replace table {qualified(schema, table)} as select * from frame_to_write")
    finally:
        conn.unregister("frame_to_write")


def write_parquet(frame: pl.DataFrame, output_dir: Path, table: str, metadata: dict[str, str]) -> Path:
    """Write to a temporary file beside the target, then rename over it: readers never see half a file."""
    path = output_path(output_dir, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
    handle, temporary = tempfile.mkstemp(prefix=f".{table}.", suffix=".parquet.tmp", dir=path.parent)
    os.close(handle)
    try:
        pq.write_table(arrow, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
