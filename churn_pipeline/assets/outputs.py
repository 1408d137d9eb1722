"""Publishing: the run's staged warehouse and Parquet files replace the live ones, atomically."""

import time

import dagster as dg

from churn_pipeline.assets.churn import churn_assets
from churn_pipeline.assets.cohorts import QUARANTINE, cohort_assets
from churn_pipeline.assets.metadata import report
from churn_pipeline.lib.publish import publish_run
from churn_pipeline.resources import PipelineConfig, Warehouse

PUBLISHED_TABLES = [asset.key for asset in [*cohort_assets, *churn_assets]]


@dg.asset(
    key=dg.AssetKey(["published"]),
    deps=[*PUBLISHED_TABLES, QUARANTINE],
    group_name="outputs",
    kinds={"duckdb", "parquet"},
)
def published(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """The run's warehouse and Parquet files, swapped in atomically once every blocking check upstream has passed."""
    started = time.perf_counter()
    files = publish_run(warehouse.live_path, pipeline.settings().output_dir)
    report(context, len(files), time.perf_counter() - started, "(files: the warehouse and each Parquet table)")
    return dg.MaterializeResult(
        metadata={
            "warehouse": dg.MetadataValue.path(str(warehouse.live_path)),
            "output_dir": dg.MetadataValue.path(str(pipeline.settings().output_dir)),
            "files": dg.MetadataValue.md("\n".join(f"- {name}" for name in files)),
        }
    )
