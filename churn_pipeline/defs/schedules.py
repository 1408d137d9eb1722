"""Jobs and schedules: the whole graph, materialized in dependency order with every check."""

import dagster as dg

from churn_pipeline.defs.partitions import SCHEDULE_DAY, SCHEDULE_HOUR

churn_job = dg.define_asset_job(
    name="churn_pipeline_job",
    selection=dg.AssetSelection.all(),
    description=(
        "Ingest the raw files, build every model and publish every table, with all checks. "
        "With a month partition (or a backfill range) only those delivery months are loaded and "
        "the published tables are as of the close of the last month."
    ),
)

monthly_schedule = dg.build_schedule_from_partitioned_job(
    churn_job,
    name="monthly_churn_schedule",
    description="Loads the month that just closed and republishes every table as of its close.",
    day_of_month=SCHEDULE_DAY,
    hour_of_day=SCHEDULE_HOUR,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
