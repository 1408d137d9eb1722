"""Outputs: the churn report, and publishing: the run's staged warehouse, Parquet files and
report replace the live ones, atomically."""

import time

import dagster as dg
import polars as pl

from churn_pipeline.defs.asset_keys import QUARANTINE, marts
from churn_pipeline.defs.metadata import report
from churn_pipeline.defs.resources import TRANSIENT_RETRIES, WAREHOUSE_POOL, PipelineConfig, Warehouse
from churn_pipeline.lib import report as churn_report_html
from churn_pipeline.lib.build_area import build_dir
from churn_pipeline.lib.observation import read_observation
from churn_pipeline.lib.output_files import output_path, write_text_atomic
from churn_pipeline.lib.quality import quarantine_reasons, reconciliation
from churn_pipeline.lib.release import release_build, release_outputs
from churn_pipeline.lib.table_docs import TABLES

# the tables built by @mart (defs/cohorts.py, defs/churn.py): every documented table with a Parquet
# file but the quarantine, a SQL model (defs/models.py writes its file)
PUBLISHED_TABLES = [marts(table.name) for table in TABLES if table.parquet and marts(table.name) != QUARANTINE]
REPORT = dg.AssetKey(["churn_report"])


@dg.asset(key=REPORT, deps=[*PUBLISHED_TABLES, QUARANTINE], group_name="outputs", kinds={"html"}, pool=WAREHOUSE_POOL)
def churn_report(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """A self-contained HTML report (`<output_dir>/churn_report.html`, charts inline, opens offline):
    cohort heatmaps, retention curve, high-risk months, churn by channel, segment and price change,
    the monthly MRR bridge and churn against benchmarks, reactivation, and data quality."""
    started = time.perf_counter()
    with warehouse.tables() as warehouse_tables:
        tables = {key.path[-1]: warehouse_tables.frame(f"select * from marts.{key.path[-1]}") for key in PUBLISHED_TABLES}
        observation = read_observation(warehouse_tables)
        inputs = churn_report_html.ReportInputs(
            tables=tables,
            data_quality=reconciliation(warehouse_tables),
            quarantine_reasons=quarantine_reasons(warehouse_tables),
            as_of=observation.as_of,
            last_complete_month=observation.last_complete_month,
            timezone=pipeline.timezone,
            currency=pipeline.currency,
        )
    key_charts: dict[str, str] = {}
    page = churn_report_html.render(inputs, key_charts=key_charts)
    write_text_atomic(page, build_dir(pipeline.output_path), "churn_report", ".html")
    report(context, len(page), time.perf_counter() - started, unit="bytes")
    quality = inputs.data_quality
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(output_path(pipeline.output_path, "churn_report", ".html"))),
            "size_bytes": len(page),
            "charts": page.count('<figure class="chart"'),
            "as_of": str(observation.as_of),
            "data_quality": dg.MetadataValue.md(
                "| source | raw rows | loaded | quarantined |\n|---|---|---|---|\n"
                + "\n".join(
                    f"| {source} | {raw:,} | {loaded:,} | {quarantined:,} |"
                    for source, raw, loaded, quarantined in quality.rows()
                )
            ),
            **{f"chart: {title}": dg.MetadataValue.md(image) for title, image in key_charts.items()},
            "high_risk_months": dg.MetadataValue.md(
                "\n".join(
                    f"- {b}: month {k} (lift {lift:.1f})"
                    for b, k, lift in tables["high_risk_months"]
                    .filter(pl.col("is_high_risk"))
                    .select("basis", "months_since_signup", "lift")
                    .rows()
                )
                or "none"
            ),
        }
    )


@dg.asset(
    key=dg.AssetKey(["published"]),
    deps=[*PUBLISHED_TABLES, QUARANTINE, REPORT],
    group_name="outputs",
    kinds={"duckdb", "spark", "parquet"},
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRIES,
)
def published(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """The run's warehouse, Parquet files and report, swapped in atomically once every blocking check upstream has passed."""
    started = time.perf_counter()
    if warehouse.on_spark:
        # Spark's tables were replaced as they were built; the published files are swapped in here
        files = release_outputs(pipeline.output_path)
        what = "each Parquet table and the report"
    else:
        warehouse.close_build()
        files = release_build(warehouse.live_path, pipeline.output_path)
        what = "the warehouse, each Parquet table and the report"
    report(context, len(files), time.perf_counter() - started, what, unit="files")
    return dg.MaterializeResult(
        metadata={
            "warehouse": dg.MetadataValue.path(str(warehouse.live_path)),
            "output_dir": dg.MetadataValue.path(str(pipeline.output_path)),
            "files": dg.MetadataValue.md("\n".join(f"- {name}" for name in files)),
        }
    )
