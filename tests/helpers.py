"""Shared test helpers: write raw files, build the warehouse without a Dagster run, or run the job."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from churn_pipeline.defs.marts import compute_marts
from churn_pipeline.lib import churn_tables, cohorts, high_risk, survival
from churn_pipeline.lib.duck import scan_table
from churn_pipeline.lib.settings import PipelineSettings
from churn_pipeline.lib.warehouse_build import build_warehouse

FIXTURES = Path(__file__).parent / "fixtures"

# subscription event types in the lifecycle order of dbt_like_sql/macros/lifecycle.sql
LIFECYCLE_EVENT_TYPES = (
    "trial_started", "subscribed", "reactivated", "renewed", "plan_changed", "price_changed",
    "payment_failed", "cancelled", "expired",
)  # fmt: skip


def write_raw(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return directory


def sql_parameters(**settings: object) -> dict[str, object]:
    """What SQL models bind, from the declared defaults and these settings."""
    return PipelineSettings(**settings).sql_parameters()


class Built:
    """A warehouse in memory, built by `build_warehouse` (the package's Dagster-free build)."""

    def __init__(self, raw_dir: Path, **settings: object):
        self.settings = PipelineSettings(raw_dir=str(raw_dir), **settings)
        self.conn = duckdb.connect()
        build_warehouse(self.conn, self.settings)
        self.last_complete_month: date = self.sql("select last_complete_month from staging.int_observation_window").item()

    def sql(self, query: str, parameters: dict | None = None) -> pl.DataFrame:
        return self.conn.sql(query, params=parameters).pl()

    def frame(self, table: str) -> pl.LazyFrame:
        return scan_table(self.conn, table)

    def cohort_retention(self) -> pl.DataFrame:
        return cohorts.cohort_retention(
            self.frame("staging.int_survival_counts"), self.frame("staging.int_cohort_activity"), self.last_complete_month
        ).collect()

    def retention_curve(self) -> pl.DataFrame:
        all_customers = self.frame("staging.int_survival_counts").filter(pl.col("dimension") == "all")
        return survival.life_table(all_customers, ["basis"]).collect()

    def high_risk_months(self) -> pl.DataFrame:
        return high_risk.high_risk_months(self.retention_curve(), self.settings.high_risk, self.settings.inactivity_days)

    def churn_by_month(self) -> pl.DataFrame:
        return churn_tables.churn_by_month(
            self.sql("select * from staging.int_monthly_movements"), self.sql("select * from staging.int_revenue_retention")
        )

    def published_tables(self) -> dict[str, pl.DataFrame]:
        """Every table the job publishes, computed by the marts' own functions."""
        return compute_marts(self.conn, self.settings)


def run_job(raw_dir: Path, workdir: Path, warehouse: dict | None = None, **pipeline: object) -> dg.ExecuteInProcessResult:
    """The real Dagster job, in-process, as `churn-pipeline run` does it."""
    from churn_pipeline.definitions import defs

    config = {"raw_dir": str(raw_dir), "output_dir": str(workdir / "marts"), **pipeline}
    run_config = {
        "resources": {
            "pipeline": {"config": config},
            "warehouse": {"config": {"database": str(workdir / "warehouse.duckdb"), **(warehouse or {})}},
        }
    }
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs().resolve_job_def("churn_pipeline_job")
        return job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def multiprocess_job() -> dg.JobDefinition:
    """The job under Dagster's multi-process executor, every step in a process of its own
    (for `dg.reconstructable`, which the executor's processes load it by)."""
    from churn_pipeline.definitions import defs

    job = dg.define_asset_job(
        "churn_pipeline_multiprocess", selection=dg.AssetSelection.all(), executor_def=dg.multiprocess_executor
    )
    return dg.Definitions.merge(defs(), dg.Definitions(jobs=[job])).resolve_job_def("churn_pipeline_multiprocess")
