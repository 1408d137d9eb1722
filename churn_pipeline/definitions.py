"""The Dagster code location: assets, checks, the main job and its resources."""

import dagster as dg

from churn_pipeline.assets.checks import asset_checks
from churn_pipeline.assets.churn import churn_assets
from churn_pipeline.assets.cohorts import cohort_assets
from churn_pipeline.assets.ingest import raw_assets
from churn_pipeline.assets.models import model_assets
from churn_pipeline.assets.outputs import churn_report, published
from churn_pipeline.jobs import churn_job, monthly_schedule
from churn_pipeline.resources import PipelineConfig, Warehouse

defs = dg.Definitions(
    assets=[*raw_assets, *model_assets, *cohort_assets, *churn_assets, churn_report, published],
    asset_checks=asset_checks,
    jobs=[churn_job],
    schedules=[monthly_schedule],
    resources={"pipeline": PipelineConfig(), "warehouse": Warehouse()},
    # one DuckDB writer at a time: steps run one after another in the run's process
    executor=dg.in_process_executor,
)
