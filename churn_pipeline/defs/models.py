"""One Dagster asset per SQL model file in dbt_like_sql/; dependencies come from the SQL."""

import time

import dagster as dg

from churn_pipeline.defs.asset_keys import raw
from churn_pipeline.defs.marts import parquet_metadata
from churn_pipeline.defs.metadata import report
from churn_pipeline.defs.partitions import run_months
from churn_pipeline.defs.resources import WAREHOUSE_POOL, PipelineConfig, Warehouse
from churn_pipeline.defs.schemas import table_schema
from churn_pipeline.lib.build_area import build_dir
from churn_pipeline.lib.observation import read_observation
from churn_pipeline.lib.output_files import output_path, write_parquet
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.sql_models import ModelBuild, SqlModel, load_models, run_model
from churn_pipeline.lib.table_docs import TABLES_BY_NAME

# raw tables and the ingestion assets that write them
_RAW_TABLE_ASSETS = {source.name: [raw(source.name)] for source in SOURCES}
_RAW_TABLE_ASSETS["csv_rejects"] = [raw(source.name) for source in SOURCES]


def model_asset_key(model: SqlModel) -> dg.AssetKey:
    return dg.AssetKey([model.schema, model.name])


def _deps(model: SqlModel, known: dict[tuple[str, str], SqlModel]) -> list[dg.AssetKey]:
    keys: list[dg.AssetKey] = []
    for schema, table in sorted(model.references):
        if schema == "raw":
            if table not in _RAW_TABLE_ASSETS:
                raise ValueError(f"{model.path.name}: unknown raw table raw.{table}")
            keys.extend(_RAW_TABLE_ASSETS[table])
        elif (schema, table) in known:
            keys.append(model_asset_key(known[(schema, table)]))
        else:
            raise ValueError(f"{model.path.name}: refers to {schema}.{table}, which no model builds")
    return sorted(set(keys), key=lambda key: key.to_user_string())


def _is_published(model: SqlModel) -> bool:
    """A marts model with a Parquet file (the quarantine)."""
    return model.schema == "marts" and model.name in TABLES_BY_NAME and TABLES_BY_NAME[model.name].parquet


def _model_asset(model: SqlModel, known: dict[tuple[str, str], SqlModel]) -> dg.AssetsDefinition:
    deps = _deps(model, known)
    if _is_published(model):
        # its Parquet file carries the observation window (as_of) in its metadata, as every published file does
        deps = sorted({*deps, dg.AssetKey(["staging", "int_observation_window"])}, key=lambda key: key.to_user_string())

    @dg.asset(
        key=model_asset_key(model),
        deps=deps,
        group_name=model.layer,
        kinds={"duckdb", "sql"},
        description=model.description,
        metadata={
            "sql_file": dg.MetadataValue.path(f"dbt_like_sql/{model.layer}/{model.path.name}"),
            "dagster/column_schema": table_schema(model.schema, model.name),
        },
        pool=WAREHOUSE_POOL,
    )
    def sql_table(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
        started = time.perf_counter()
        published = _is_published(model)
        parameters = pipeline.run_sql_parameters(run_months(context))
        if warehouse.on_spark:
            built = _build_on_spark(warehouse, model, parameters)
        else:
            with warehouse.get_connection() as conn:
                built = run_model(conn, model, parameters, full_refresh=pipeline.full_refresh)
        if published:
            # a published SQL table (the quarantine) also goes to Parquet, as the polars marts do
            with warehouse.tables() as tables:
                frame = tables.frame(f"select * from {model.table}")
                write_parquet(
                    frame, build_dir(pipeline.output_path), model.name, parquet_metadata(pipeline, read_observation(tables))
                )
        incremental = model.materialized == "incremental"
        report(context, built.rows, time.perf_counter() - started, built.how if incremental else "")
        counted = {} if built.rows is None else {"dagster/row_count": built.rows}
        how = {"incremental_build": built.how} if incremental else {}
        parquet = {"parquet": dg.MetadataValue.path(str(output_path(pipeline.output_path, model.name)))} if published else {}
        return dg.MaterializeResult(
            metadata={**counted, "table": model.table, "materialized": model.materialized, **how, **parquet}
        )

    return sql_table


def _build_on_spark(warehouse: Warehouse, model: SqlModel, parameters: dict[str, object]) -> ModelBuild:
    """The model in full on Spark, its rows counted (a view: not counted, as on DuckDB); once staging
    has read every file, the load manifest counts them."""
    from churn_pipeline.lib import spark_build, spark_ingest

    spark = warehouse.spark()
    spark_build.run_model(spark, model, parameters, warehouse.live_path.absolute())
    if _is_published(model):
        spark_ingest.register_manifest(spark, warehouse.spark_files)
    rows = None if model.materialized == "view" else spark.table(model.table).count()
    return ModelBuild(rows=rows, how="full rebuild (Spark)")


def build_model_assets() -> list[dg.AssetsDefinition]:
    models = load_models()
    known = {(model.schema, model.name): model for model in models}
    return [_model_asset(model, known) for model in models]


model_assets = build_model_assets()
