"""Raw ingestion: every orders*, subscription_events* and fx_rates* file into `raw.*`, as text."""


import time

import dagster as dg

from churn_pipeline.assets.metadata import report
from churn_pipeline.lib.adapters import load_adapter, load_through_adapter
from churn_pipeline.lib.duck import scalar
from churn_pipeline.lib.ingest import load_source
from churn_pipeline.lib.raw_sources import SOURCES, RawSource
from churn_pipeline.resources import PipelineConfig, Warehouse


def raw_asset_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def _raw_asset(source: RawSource) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_asset_key(source.name),
        group_name="ingest",
        kinds={"duckdb", "csv", "parquet"},
        description=(
            f"Every row of the raw {source.name}* files (CSV or Parquet), as text, with source file and row, "
            "or what a source adapter (--source) maps onto them. Rows the CSV parser cannot read are kept in raw.csv_rejects."
        ),
    )
    def raw_table(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
        started = time.perf_counter()
        settings = pipeline.settings()
        with warehouse.get_connection() as conn:
            if pipeline.source:
                adapter = load_adapter(pipeline.source)
                loads = load_through_adapter(conn, adapter, source, settings.raw_dir, adapter.options(pipeline.source_options))
            else:
                loads = load_source(conn, source, settings.raw_dir)
            loaded = scalar(conn, f"select count(*) from raw.{source.name}")
        read = sum(load.rows_loaded for load in loads)
        rejected = sum(load.rows_rejected for load in loads)
        via = f" via {pipeline.source} from {read:,} source rows" if pipeline.source else ""
        report(context, loaded, time.perf_counter() - started, f"{len(loads)} files{via}, {rejected} unreadable rows")
        files = "\n".join(f"| {l.file} | {l.rows_loaded} | {l.rows_rejected} |" for l in loads)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": loaded,
                "unreadable_rows": rejected,
                "source_rows_read": read,
                "files": dg.MetadataValue.md(f"| file | rows | unreadable |\n|---|---|---|\n{files}"),
                "raw_dir": dg.MetadataValue.path(str(settings.raw_dir)),
                "source_adapter": pipeline.source or "none (contract layout)",
            }
        )

    return raw_table


raw_assets = [_raw_asset(source) for source in SOURCES]
