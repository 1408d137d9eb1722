"""Raw ingestion: every orders*, subscription_events* and fx_rates* file registered in the load
manifest, and `raw.*` views that read them in place."""

import time
import warnings

import dagster as dg
import duckdb

from churn_pipeline.defs.asset_keys import raw
from churn_pipeline.defs.metadata import note, report
from churn_pipeline.defs.partitions import delivery_partitions, run_months
from churn_pipeline.defs.resources import TRANSIENT_RETRIES, WAREHOUSE_POOL, PipelineConfig, Warehouse
from churn_pipeline.defs.schemas import raw_schema
from churn_pipeline.lib.adapters import load_adapter, load_through_adapter
from churn_pipeline.lib.ingest import RawFileChanged, check_unchanged, load_source
from churn_pipeline.lib.raw_sources import SOURCES, RawSource
from churn_pipeline.lib.settings import SettingsError


def _is_transient(exc: BaseException) -> bool:
    """A file still being written, or a lock another process will release."""
    return isinstance(exc, RawFileChanged) or (isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower())


def _raw_asset(source: RawSource, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        # single-run backfills are what a DuckDB table wants; Dagster still labels the option beta
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        return _define_raw_asset(source, partitions)


def _define_raw_asset(source: RawSource, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw(source.name),
        group_name="ingest",
        kinds={"duckdb", "csv", "parquet"},
        description=(
            f"The raw {source.name}* files (CSV or Parquet): a line per file in raw.load_manifest (size, checksum, "
            f"columns; rows once staged) and raw.{source.name}, a view that reads them in place, as text, with "
            "source file and row. Staging reads each file once through it; rows the CSV parser cannot read go to "
            "raw.csv_rejects. A source adapter (--source) writes a text table instead. With month folders in the "
            "raw directory it is partitioned by delivery month: a partition registers the files in raw_dir/YYYY-MM/ "
            "(and the top-level files) again."
        ),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions else None,
        retry_policy=TRANSIENT_RETRIES,
        pool=WAREHOUSE_POOL,
        metadata={"dagster/column_schema": raw_schema(source)},
    )
    def raw_table(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
        started = time.perf_counter()
        months = run_months(context)
        if warehouse.on_spark:
            return _raw_on_spark(context, pipeline, warehouse, source, months, started)
        try:
            with warehouse.get_connection() as conn:
                if pipeline.source:
                    if months:
                        raise SettingsError(
                            f"source {pipeline.source}: adapters load whole files; run it without a month partition"
                        )
                    adapter = load_adapter(pipeline.source)
                    loads = load_through_adapter(
                        conn, adapter, source, pipeline.raw_path, adapter.options(pipeline.source_options)
                    )
                    upgraded = False
                else:
                    if pipeline.full_refresh and not pipeline.rebuild_from_files:
                        check_unchanged(conn, pipeline.raw_path, source.name)
                    rebuild = pipeline.full_refresh and pipeline.rebuild_from_files
                    loaded = load_source(conn, source, pipeline.raw_path, months, every_loaded_month=rebuild)
                    loads, upgraded = loaded.files, loaded.upgraded
        except Exception as exc:
            if _is_transient(exc):
                context.log.warning(f"{exc}; retried by the step's retry policy")
                raise
            raise dg.Failure(str(exc), allow_retries=False) from exc
        size = sum(load.size for load in loads)
        if pipeline.source:
            detail = f"via {pipeline.source}, {sum(load.rows_loaded or 0 for load in loads):,} source rows"
        else:
            detail = f"{size / 1e6:,.1f} MB, read in place"
        report(context, len(loads), time.perf_counter() - started, detail, unit="files")
        if upgraded:
            note(
                context,
                f"upgraded in place: raw.{source.name} was a text table (an earlier version, or a source adapter); it is now a view of the "
                "delivery files, every file is registered again and the staging models rebuild",
            )
        for load in loads:
            if load.ignored_columns:
                note(context, f"{load.file}: extra columns ignored: {', '.join(load.ignored_columns)}")
        files = "\n".join(
            f"| {load.file} | {load.size:,} | {load.sha256[:12]} | {', '.join(load.ignored_columns)} |" for load in loads
        )
        return dg.MaterializeResult(
            metadata={
                "files_registered": len(loads),
                "bytes": size,
                "upgraded_in_place": upgraded,
                "files": dg.MetadataValue.md(f"| file | bytes | sha256 | extra columns ignored |\n|---|---|---|---|\n{files}"),
                "ignored_columns": dg.MetadataValue.json(
                    {load.file: list(load.ignored_columns) for load in loads if load.ignored_columns}
                ),
                "raw_dir": dg.MetadataValue.path(str(pipeline.raw_path)),
                "source_adapter": pipeline.source or "none (contract layout)",
                "delivery_months": ", ".join(months) if months else "all files",
            }
        )

    return raw_table


@dg.definitions
def raw_ingest() -> dg.Definitions:
    partitions = delivery_partitions()
    return dg.Definitions(assets=[_raw_asset(source, partitions) for source in SOURCES])


def _raw_on_spark(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfig,
    warehouse: Warehouse,
    source: RawSource,
    months: tuple[str, ...] | None,
    started: float,
) -> dg.MaterializeResult:
    """raw.<source> as a Spark session view of every delivery file, or of a source adapter's select
    over its files (no appends on Spark yet)."""
    from churn_pipeline.lib.spark_ingest import by_source, register_source, register_through_adapter

    try:
        if pipeline.source:
            if months:
                raise SettingsError(f"source {pipeline.source}: adapters load whole files; run it without a month partition")
            adapter = load_adapter(pipeline.source)
            options = adapter.options(pipeline.source_options)
            files = register_through_adapter(warehouse.spark(), adapter, source, pipeline.raw_path, options)
        else:
            files = register_source(warehouse.spark(), pipeline.raw_path, source)
    except Exception as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    warehouse.spark_files.update(by_source(files))
    via = f"via {pipeline.source}, " if pipeline.source else ""
    report(context, len(files), time.perf_counter() - started, f"{via}read in place by Spark", unit="files")
    if months:
        note(context, f"on Spark every delivery file is read and every model rebuilt; months {months[0]}..{months[-1]} asked for")
    return dg.MaterializeResult(
        metadata={
            "files_registered": len(files),
            "files": dg.MetadataValue.md("\n".join(f"- {delivered.file}" for delivered in files) or "none"),
            "raw_dir": dg.MetadataValue.path(str(pipeline.raw_path)),
            "engine": "spark",
            "delivery_months": ", ".join(months) if months else "all files",
        }
    )
