"""The warehouse on Spark: the delivery files read by lib/spark_ingest.py, then the same SQL models
as on DuckDB, rendered by lib/dialects.py, each table written as Parquet under the Spark
warehouse directory and registered in the session's catalog. For notebooks and scripts:

    from pathlib import Path
    from churn_pipeline.lib.settings import PipelineSettings
    from churn_pipeline.lib.spark_build import build_warehouse, spark_session

    warehouse = Path("data/spark-warehouse")
    spark = spark_session(warehouse)            # local[2]; or remote="sc://host:15002"
    build_warehouse(spark, PipelineSettings(raw_dir="data/raw"), warehouse)
    spark.table("staging.int_customers").show()

pyspark and sqlglot are the optional `spark` extra (`pip install 'churn-pipeline[spark]'`).
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from churn_pipeline.lib import dialects, spark_ingest, sql_models
from churn_pipeline.lib.adapters import load_adapter
from churn_pipeline.lib.identifiers import validate_identifier
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.settings import PipelineSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# the same meaning on both engines: instants in UTC; division by zero and a failed cast give null
SESSION_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def spark_session(warehouse: Path, remote: str | None = None, cores: int = 2, driver_memory: str | None = None) -> SparkSession:
    """A local Spark session (`local[cores]`, its JVM given `driver_memory`, e.g. "4g"), or one on
    a Spark Connect server at `remote`."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("churn_pipeline")
    if remote:
        builder = builder.remote(remote)
    else:
        builder = (
            builder.master(f"local[{cores}]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(cores * 2))
            .config("spark.sql.warehouse.dir", str(warehouse))
        )
        if driver_memory:
            builder = builder.config("spark.driver.memory", driver_memory)
    for key, value in SESSION_SETTINGS.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in SESSION_SETTINGS.items():
        spark.conf.set(key, value)
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def table_location(warehouse: Path, schema: str, name: str) -> Path:
    validate_identifier(schema, "schema")
    validate_identifier(name, "table")
    return warehouse / schema / name


def write_table(spark: SparkSession, warehouse: Path, schema: str, name: str, sql: str, args: dict) -> None:
    """Write the select's rows as a new Parquet directory beside the table's current one, then point
    the catalog's table at it and remove the old one: a failed write leaves the table as it was."""
    home = table_location(warehouse, schema, name)
    version = home / f"build-{uuid.uuid4().hex[:12]}"
    frame = spark.sql(sql, args=args or None)
    frame.write.parquet(str(version))
    spark.sql(f"drop table if exists {schema}.{name}")
    spark.sql(f"drop view if exists {schema}.{name}")
    spark.sql(f"create table {schema}.{name} using parquet location '{_quoted(version)}'")
    for old in home.iterdir():
        if old != version and old.name.startswith("build-"):
            shutil.rmtree(old, ignore_errors=True)


def _quoted(path: Path) -> str:
    return str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'")


def run_model(spark: SparkSession, model: sql_models.SqlModel, parameters: dict[str, object], warehouse: Path) -> None:
    """Build one model on Spark, in full (Spark has no appends yet)."""
    bound = {name: parameters[name] for name in model.bound_parameters}
    sql = dialects.to_spark(model.render())
    if model.materialized == "view":
        spark.sql(f"drop table if exists {model.table}")
        spark.sql(f"create or replace view {model.table} as {sql}")
        return
    if not model.post_hook:
        write_table(spark, warehouse, model.schema, model.name, sql, _used(sql, bound))
        return
    # the post hook reads the model's rows: they are written first, under a name of their own
    built = f"{model.name}__before_post_hook"
    write_table(spark, warehouse, model.schema, built, sql, _used(sql, bound))
    columns = spark.table(f"{model.schema}.{built}").columns
    hook = dialects.post_hook_to_spark(model.post_hook.replace("{{ this }}", f"{model.schema}.{built}"), columns)
    write_table(spark, warehouse, model.schema, model.name, hook, _used(hook, bound))
    spark.sql(f"drop table if exists {model.schema}.{built}")
    shutil.rmtree(table_location(warehouse, model.schema, built), ignore_errors=True)


def _used(sql: str, bound: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in bound.items() if re.search(rf":{name}\b", sql)}


def create_schemas(spark: SparkSession) -> None:
    for schema in sql_models.SCHEMAS:
        spark.sql(f"create database if not exists {validate_identifier(schema, 'schema')}")


def build_models(spark: SparkSession, parameters: dict[str, object], warehouse: Path) -> None:
    """Every SQL model, in dependency order."""
    create_schemas(spark)
    for model in sql_models.topological_order(sql_models.load_models()):
        run_model(spark, model, parameters, warehouse)


def build_warehouse(spark: SparkSession, settings: PipelineSettings, warehouse: Path) -> None:
    """Read the delivery files in `settings.raw_path` and build every SQL model (the Spark
    counterpart of lib/warehouse_build.py), through `settings.source`'s adapter if any."""
    spark_ingest.clear_raw(spark)
    if settings.source:
        adapter = load_adapter(settings.source)
        options = adapter.options(settings.source_options)
        files = spark_ingest.by_source(
            [
                delivered
                for source in SOURCES
                for delivered in spark_ingest.register_through_adapter(spark, adapter, source, settings.raw_path, options)
            ]
        )
    else:
        files = spark_ingest.register_raw(spark, settings.raw_path)
    build_models(spark, settings.sql_parameters(), warehouse)
    spark_ingest.register_manifest(spark, files)
