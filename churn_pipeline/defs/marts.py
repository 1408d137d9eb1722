"""Published tables built by polars: `@mart` turns a function that returns a table's frame into
an asset that writes it to the warehouse's `marts` schema and to Parquet, with its metadata."""

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
import duckdb
import polars as pl

from churn_pipeline.defs.asset_keys import marts
from churn_pipeline.defs.metadata import column_schema, observation_metadata, report
from churn_pipeline.defs.resources import WAREHOUSE_POOL, PipelineConfig, Warehouse
from churn_pipeline.defs.schemas import table_schema
from churn_pipeline.lib.build_area import build_dir
from churn_pipeline.lib.identifiers import validate_identifier
from churn_pipeline.lib.observation import Observation, read_observation
from churn_pipeline.lib.output_files import output_path, write_parquet
from churn_pipeline.lib.settings import CONTRACT_VERSION, PipelineSettings
from churn_pipeline.lib.table_docs import TABLES_BY_NAME
from churn_pipeline.lib.warehouse_tables import DuckDBTables, WarehouseTables


@dataclass(frozen=True)
class MartInputs:
    """What a mart's function reads: the run's warehouse (on its engine), settings and observation window."""

    tables: WarehouseTables
    settings: PipelineSettings
    observation: Observation

    @property
    def last_complete_month(self) -> date:
        return self.observation.last_complete_month or date(1, 1, 1)

    def scan(self, table: str) -> pl.LazyFrame:
        """A warehouse table as a lazy frame that reads only the columns the plan uses."""
        return self.tables.scan(table)

    def read(self, table: str) -> pl.DataFrame:
        """A small warehouse table (an aggregate or another mart), whole."""
        schema, _, name = table.partition(".")
        return self.tables.frame(f"select * from {validate_identifier(schema)}.{validate_identifier(name)}")


def parquet_metadata(settings: PipelineSettings, observation: Observation) -> dict[str, str]:
    return {
        "churn_pipeline.contract_version": CONTRACT_VERSION,
        "churn_pipeline.as_of": observation.as_of.isoformat() if observation.as_of else "",
        "churn_pipeline.last_complete_month": str(observation.last_complete_month or ""),
        "churn_pipeline.reporting_timezone": settings.timezone,
    }


def with_as_of(frame: pl.DataFrame, observation: Observation) -> pl.DataFrame:
    """The table with its `as_of` column last: the instant the data is observed to (the same on
    every row), so a dashboard shows "data as of" without reading the file's metadata."""
    return frame.drop("as_of", strict=False).with_columns(
        pl.lit(observation.as_of, dtype=pl.Datetime("us", "UTC")).alias("as_of")
    )


# every mart's function (as_of added) and the `marts` tables it reads
MART_FUNCTIONS: dict[str, tuple[Callable[[MartInputs], pl.DataFrame], set[str]]] = {}


def mart(
    *, deps: Sequence[dg.AssetKey], group_name: str, preview: Callable[[pl.DataFrame], str]
) -> Callable[[Callable[[MartInputs], pl.DataFrame]], dg.AssetsDefinition]:
    """The asset `marts/<function name>`, described by the function's docstring."""

    def decorator(compute: Callable[[MartInputs], pl.DataFrame]) -> dg.AssetsDefinition:
        table = compute.__name__

        def build(inputs: MartInputs) -> pl.DataFrame:
            return with_as_of(compute(inputs), inputs.observation)

        MART_FUNCTIONS[table] = (build, {key.path[-1] for key in deps if key.path[0] == "marts"})

        @dg.asset(
            key=marts(table),
            deps=deps,
            group_name=group_name,
            kinds={"polars", "duckdb", "spark", "parquet"},
            description=inspect.getdoc(compute),
            metadata={"dagster/column_schema": table_schema("marts", table)},
            pool=WAREHOUSE_POOL,
        )
        def published_table(
            context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse
        ) -> dg.MaterializeResult:
            started = time.perf_counter()
            with warehouse.tables() as tables:
                observation = read_observation(tables)
                frame = build(MartInputs(tables, pipeline, observation))
                tables.write("marts", table, frame)
            write_parquet(frame, build_dir(pipeline.output_path), table, parquet_metadata(pipeline, observation))
            report(context, frame.height, time.perf_counter() - started)
            return dg.MaterializeResult(
                metadata={
                    "dagster/row_count": frame.height,
                    "dagster/column_schema": column_schema(frame, TABLES_BY_NAME[table].columns),
                    **observation_metadata(observation.as_of, observation.last_complete_month),
                    "parquet": dg.MetadataValue.path(str(output_path(pipeline.output_path, table))),
                    "preview": dg.MetadataValue.md(preview(frame)),
                }
            )

        return published_table

    return decorator


def compute_marts(warehouse: duckdb.DuckDBPyConnection | WarehouseTables, settings: PipelineSettings) -> dict[str, pl.DataFrame]:
    """Every published table, computed by the marts' own functions on a built warehouse (a DuckDB
    connection, or SparkTables; no Dagster run), each also written to `marts` for the marts that read it."""
    import churn_pipeline.defs.churn  # noqa: F401  (declares the marts)
    import churn_pipeline.defs.cohorts  # noqa: F401

    tables = DuckDBTables(warehouse) if isinstance(warehouse, duckdb.DuckDBPyConnection) else warehouse
    inputs = MartInputs(tables, settings, read_observation(tables))
    frames: dict[str, pl.DataFrame] = {}
    while len(frames) < len(MART_FUNCTIONS):
        # a mart waits for the other marts it reads (the SQL-built quarantine is already there)
        ready = [
            t for t, (_, reads) in MART_FUNCTIONS.items() if t not in frames and reads & MART_FUNCTIONS.keys() <= frames.keys()
        ]
        if not ready:
            raise ValueError(f"marts that read each other: {sorted(MART_FUNCTIONS.keys() - frames.keys())}")
        for table in ready:
            frames[table] = MART_FUNCTIONS[table][0](inputs)
            tables.write("marts", table, frames[table])
    return frames
