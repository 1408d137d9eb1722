"""Small DuckDB helpers. DuckDB 2.0 streams results, so every read here drains its result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import polars as pl
from polars.io.plugins import register_io_source

from churn_pipeline.lib.identifiers import qualified


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, parameters: Any = None) -> Any:
    rows = conn.execute(sql, parameters).fetchall() if parameters is not None else conn.execute(sql).fetchall()
    return rows[0][0] if rows else None


def rows(conn: duckdb.DuckDBPyConnection, sql: str, parameters: Any = None) -> list[tuple]:
    return conn.execute(sql, parameters).fetchall() if parameters is not None else conn.execute(sql).fetchall()


def has_column(conn: duckdb.DuckDBPyConnection, schema: str, table: str, column: str | None = None) -> bool:
    """Whether the table exists (and, given `column`, has that column)."""
    return bool(
        scalar(
            conn,
            "select count(*) from information_schema.columns where table_schema = $schema and table_name = $table"
            " and ($column is null or column_name = $column)",
            {"schema": schema, "table": table, "column": column},
        )
    )


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything in the block commits together, or nothing does."""
    conn.execute("begin transaction")
    try:
        yield
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def write_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pl.DataFrame) -> None:
    """Replace `schema.table` with the frame's rows (handed over as Arrow)."""
    conn.register("frame_to_write", frame.to_arrow())
    try:
        conn.execute(f"create or replace table {qualified(schema, table)} as select * from frame_to_write")
    finally:
        conn.unregister("frame_to_write")


def scan_table(conn: duckdb.DuckDBPyConnection, table: str) -> pl.LazyFrame:
    """A warehouse table as a lazy polars frame that reads only the columns the plan uses.

    The rows arrive as Arrow batches. Each scan gets its own cursor, so a plan may read
    the same table twice at once. Collect the frame before `conn` closes.
    """
    schema = conn.table(table).limit(0).pl().schema

    def batches(
        columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        cursor = conn.cursor()
        relation = cursor.table(table)
        if columns is not None:
            relation = relation.select(*columns)
        if n_rows is not None:
            relation = relation.limit(n_rows)
        reader = relation.to_arrow_reader(batch_size or 1_000_000)
        try:
            for batch in reader:
                frame = pl.from_arrow(batch)
                # polars does not filter above a source that was handed the predicate
                yield frame if predicate is None else frame.filter(predicate)
        finally:
            reader.close()
            cursor.close()

    return register_io_source(batches, schema=schema, is_pure=True, explain_name=table)
