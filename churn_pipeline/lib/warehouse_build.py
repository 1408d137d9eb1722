"""Build the warehouse without Dagster: load every raw file, then every SQL model in dependency
order, with the same library calls the assets make. For notebooks, scripts and tests.

    import duckdb
    from churn_pipeline.lib.settings import PipelineSettings
    from churn_pipeline.lib.warehouse_build import build_warehouse

    conn = duckdb.connect()  # or a file
    build_warehouse(conn, PipelineSettings(raw_dir="data/raw", as_of="2024-07-10T00:00:00Z"))
    conn.sql("select * from staging.int_customers")

`churn_pipeline.defs.marts.compute_marts(conn, settings)` then computes every published table.
"""

from __future__ import annotations

import duckdb

from churn_pipeline.lib import ingest, sql_models
from churn_pipeline.lib.adapters import load_adapter, load_through_adapter
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.settings import PipelineSettings


def build_warehouse(conn: duckdb.DuckDBPyConnection, settings: PipelineSettings) -> None:
    """Load the raw files (through `settings.source`'s adapter, if any) and build every SQL model."""
    conn.execute("set TimeZone = 'UTC'")
    adapter = load_adapter(settings.source) if settings.source else None
    for source in SOURCES:
        if adapter:
            load_through_adapter(conn, adapter, source, settings.raw_path, adapter.options(settings.source_options))
        else:
            ingest.load_source(conn, source, settings.raw_path)
    parameters = settings.sql_parameters()
    for model in sql_models.topological_order(sql_models.load_models()):
        sql_models.run_model(conn, model, parameters, full_refresh=settings.full_refresh)
