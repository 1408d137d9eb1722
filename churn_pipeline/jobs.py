"""Jobs: the whole graph, materialized in dependency order with every check."""

import dagster as dg

churn_job = dg.define_asset_job(
    name="churn_pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Ingest the raw files, build every model and publish every table, with all checks.",
)
