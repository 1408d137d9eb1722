"""What the polars steps, the checks and the report need from a warehouse, on either engine:
a query's (small) result, a table as a lazy frame, and a frame written back as a table.

Queries are written once, in DuckDB's SQL; on Spark lib/dialects.py renders them. Rows cross
between the engine and polars as Arrow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import polars as pl
from polars.io.plugins import register_io_source

from churn_pipeline.lib.duck import scan_table, write_table
from churn_pipeline.lib.identifiers import validate_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class WarehouseTables(Protocol):
    def frame(self, sql: str) -> pl.DataFrame:
        """The rows of a query in DuckDB's SQL (an aggregate or a small table)."""
        ...

    def scan(self, table: str) -> pl.LazyFrame:
        """`schema.table` as a lazy frame that reads only the columns the plan uses."""
        ...

    def write(self, schema: str, table: str, frame: pl.DataFrame) -> None:
        """Replace `schema.table` with the frame's rows."""
        ...


class DuckDBTables:
    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def frame(self, sql: str) -> pl.DataFrame:
        return self.conn.sql(sql).pl()

    def scan(self, table: str) -> pl.LazyFrame:
        return scan_table(self.conn, table)

    def write(self, schema: str, table: str, frame: pl.DataFrame) -> None:
        write_table(self.conn, schema, table, frame)


class SparkTables:
    def __init__(self, spark: SparkSession, warehouse: Path) -> None:
        self.spark = spark
        self.warehouse = warehouse

    def frame(self, sql: str) -> pl.DataFrame:
        from churn_pipeline.lib import dialects

        return pl.from_arrow(self.spark.sql(dialects.to_spark(sql)).toArrow())

    def scan(self, table: str) -> pl.LazyFrame:
        schema, _, name = table.partition(".")
        source = self.spark.table(f"{validate_identifier(schema)}.{validate_identifier(name)}")
        columns = pl.from_arrow(source.limit(0).toArrow()).schema

        def batches(
            selected: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
        ) -> Iterator[pl.DataFrame]:
            relation = source if selected is None else source.select(*selected)
            if n_rows is not None:
                relation = relation.limit(n_rows)
            frame = pl.from_arrow(relation.toArrow())
            yield frame if predicate is None else frame.filter(predicate)

        return register_io_source(batches, schema=columns, is_pure=True, explain_name=table)

    def write(self, schema: str, table: str, frame: pl.DataFrame) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        from churn_pipeline.lib import spark_build

        view = f"{validate_identifier(table)}__from_polars"
        rows = frame.to_arrow()
        # Spark Connect cannot infer a schema from no rows: an empty table gets its schema spelled out
        spark_frame = (
            self.spark.createDataFrame(rows) if rows.num_rows else self.spark.createDataFrame([], from_arrow_schema(rows.schema))
        )
        spark_frame.createOrReplaceTempView(view)
        try:
            spark_build.write_table(self.spark, self.warehouse, schema, table, f"select * from {view}", {})
        finally:
            self.spark.catalog.dropTempView(view)
