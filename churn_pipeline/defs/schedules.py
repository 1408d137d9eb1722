"""The job, its monthly schedule, and the sensors around it: new delivery months, failed runs
and overdue tables (docs/operations.md)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from churn_pipeline.defs.alerts import send_alert, step_failure
from churn_pipeline.defs.outputs import PUBLISHED_TABLES
from churn_pipeline.defs.partitions import (
    code_location_raw_dir,
    delivery_month_partitions,
    delivery_partitions,
    unregistered_months,
)
from churn_pipeline.lib.months import MONTH_KEY

# the day after a month closes, early morning in the schedule's time zone
SCHEDULE_CRON = "0 6 2 * *"
SCHEDULE_TIMEZONE = "UTC"
# run monitoring (dagster.yaml) fails a run still going after this long
MAX_RUNTIME_SECONDS = 2 * 60 * 60
# a published table not refreshed for this long is overdue: the monthly run is a month late
OVERDUE_AFTER = timedelta(days=32)

freshness_checks = dg.build_last_update_freshness_checks(assets=PUBLISHED_TABLES, lower_bound_delta=OVERDUE_AFTER)
# the freshness checks are the sensor's: right after the run that updates a table they say nothing
churn_job = dg.define_asset_job(
    name="churn_pipeline_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.checks(*freshness_checks),
    description=(
        "Ingest the raw files, build every model and publish every table, with all checks. "
        "With delivery months (a partition or a backfill range) only those months' folders are "
        "loaded and the published tables are as of the close of the last one."
    ),
    tags={"dagster/max_runtime": str(MAX_RUNTIME_SECONDS), "churn_pipeline/warehouse": "default"},
)


def month_that_closed(context: dg.ScheduleEvaluationContext) -> str:
    """The month before the tick's month, as a `YYYY-MM` key."""
    first_of_month = context.scheduled_execution_time.replace(day=1)
    return (first_of_month - timedelta(days=1)).strftime(MONTH_KEY)


def _monthly_schedule(partitioned: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="monthly_churn_schedule",
        job=churn_job,
        cron_schedule=SCHEDULE_CRON,
        execution_timezone=SCHEDULE_TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "On the 2nd of each month: loads the delivery of the month that just closed and republishes every "
            "table as of its close (a flat raw directory: reloads every file)."
        ),
    )
    def monthly_churn_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        month = month_that_closed(context)
        if not partitioned:
            return dg.RunRequest(run_key=month)
        if not context.instance.has_dynamic_partition(delivery_month_partitions.name, month):
            folder = code_location_raw_dir() / month
            return dg.SkipReason(f"month {month}: no delivery yet ({folder}/ has no orders* or subscription_events* files)")
        return dg.RunRequest(run_key=month, partition_key=month)

    return monthly_churn_schedule


@dg.sensor(
    name="delivery_months",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a delivery_month partition when a YYYY-MM/ folder with raw files appears in the raw directory.",
)
def delivery_months_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    new = unregistered_months(context.instance, code_location_raw_dir())
    if not new:
        return dg.SkipReason("no new delivery month")
    return dg.SensorResult(dynamic_partitions_requests=[delivery_month_partitions.build_add_request(new)])


@dg.run_failure_sensor(
    name="run_failure_alert",
    monitor_all_code_locations=True,  # also runs of `churn-pipeline run`, which have no code location
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="One line per failed run (its first failing step and why) to the alert log, or to CHURN_ALERT_WEBHOOK.",
)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    if run.job_name != churn_job.name:
        return
    send_alert(context.instance, failure_line(context))


def failure_line(context: dg.RunFailureSensorContext) -> str:
    run = context.dagster_run
    months = run.tags.get("dagster/partition") or "..".join(
        filter(None, (run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")))
    )
    scope = f" for {months}" if months else ""
    steps = context.get_step_failure_events()
    cause = step_failure(steps[0]) if steps else context.failure_event.message or "the run failed"
    return f"run {run.run_id} of {run.job_name}{scope} failed: {cause}"


freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks, name="published_tables_freshness", default_status=dg.DefaultSensorStatus.RUNNING
)


@dg.definitions
def schedules() -> dg.Definitions:
    partitioned = delivery_partitions() is not None
    sensors = [run_failure_alert, freshness_sensor] + ([delivery_months_sensor] if partitioned else [])
    return dg.Definitions(
        jobs=[churn_job], schedules=[_monthly_schedule(partitioned)], sensors=sensors, asset_checks=freshness_checks
    )
