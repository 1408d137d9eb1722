"""Cohort tables (contract section 4): cohort_retention, retention_curve, high_risk_months."""


import time
from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
import duckdb
import polars as pl

from churn_pipeline.assets.metadata import column_schema, markdown_table, observation_metadata, report
from churn_pipeline.lib import cohorts, high_risk, survival
from churn_pipeline.lib.duck import scan_table
from churn_pipeline.lib.publish import output_path, staging_dir, write_parquet, write_table
from churn_pipeline.lib.settings import CONTRACT_VERSION
from churn_pipeline.lib.table_docs import TABLES_BY_NAME
from churn_pipeline.resources import PipelineConfig, Warehouse

QUARANTINE = dg.AssetKey(["marts", "quarantine"])


def staging(name: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", name])


def marts(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


@dataclass(frozen=True)
class Observation:
    as_of: datetime | None
    last_complete_month: date | None


def read_observation(conn: duckdb.DuckDBPyConnection) -> Observation:
    rows = conn.execute("select as_of, last_complete_month from staging.int_observation_window").fetchall()
    return Observation(*rows[0]) if rows else Observation(None, None)


def read_frame(conn: duckdb.DuckDBPyConnection, table: str) -> pl.LazyFrame:
    """A warehouse table as a lazy polars frame; only the columns the plan uses are read."""
    return scan_table(conn, table)


def publish(
    context: dg.AssetExecutionContext,
    conn: duckdb.DuckDBPyConnection,
    pipeline: PipelineConfig,
    frame: pl.DataFrame,
    observation: Observation,
    started: float,
    preview: str,
) -> dg.MaterializeResult:
    """Write a published table to marts and Parquet, and describe it for the UI."""
    table = context.asset_key.path[-1]
    write_table(conn, "marts", table, frame)
    output_dir = pipeline.settings().output_dir
    write_parquet(
        frame,
        staging_dir(output_dir),
        table,
        {
            "churn_pipeline.contract_version": CONTRACT_VERSION,
            "churn_pipeline.as_of": observation.as_of.isoformat() if observation.as_of else "",
            "churn_pipeline.last_complete_month": str(observation.last_complete_month or ""),
            "churn_pipeline.reporting_timezone": pipeline.settings().timezone,
        },
    )
    report(context, frame.height, time.perf_counter() - started)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "dagster/column_schema": column_schema(frame, TABLES_BY_NAME[table].columns),
            **observation_metadata(observation.as_of, observation.last_complete_month),
            "parquet": dg.MetadataValue.path(str(output_path(output_dir, table))),
            "preview": dg.MetadataValue.md(preview),
        }
    )


def retention_matrix(frame: pl.DataFrame, basis: str, cohorts_shown: int = 6, months: int = 6) -> str:
    """The last cohorts by lifetime months 0..months, as a markdown matrix of retention rates."""
    part = frame.filter((pl.col("basis") == basis) & (pl.col("months_since_signup") <= months))
    if part.is_empty():
        return f"_no {basis} cohorts observed_"
    last = part.select(pl.col("cohort_month").unique().sort().tail(cohorts_shown))
    wide = (
        part.join(last, on="cohort_month")
        .with_columns(pl.col("retention_rate").round(3), pl.col("months_since_signup").cast(pl.String).alias("k"))
        .pivot(on="k", index=["cohort_month", "cohort_size"], values="retention_rate", sort_columns=False)
        .sort("cohort_month")
    )
    return f"**{basis}**: retention rate by months since signup\n\n" + markdown_table(wide, limit=cohorts_shown)


@dg.asset(
    key=marts("cohort_retention"),
    deps=[staging("int_customers"), staging("int_cohort_activity"), staging("int_observation_window"), QUARANTINE],
    group_name="cohorts",
    kinds={"polars", "duckdb", "parquet"},
)
def cohort_retention(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Customers and revenue retained per signup cohort and lifetime month (observed cells only)."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = cohorts.cohort_retention(
            read_frame(conn, "staging.int_customers"),
            read_frame(conn, "staging.int_cohort_activity"),
            observation.last_complete_month or date(1, 1, 1),
        ).collect()
        preview = "\n\n".join(retention_matrix(frame, basis) for basis in ("subscription", "orders"))
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(
    key=marts("retention_curve"),
    deps=[staging("int_customers"), staging("int_observation_window"), QUARANTINE],
    group_name="cohorts",
    kinds={"polars", "duckdb", "parquet"},
)
def retention_curve(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Kaplan-Meier survival by lifetime month, pooled over all cohorts, with a 95 % band."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = (
            survival.life_table(read_frame(conn, "staging.int_customers"), ["basis"])
            .select("basis", "months_since_signup", "at_risk", "churned", "hazard", "survival",
                    "survival_ci_low", "survival_ci_high")
            .sort("basis", "months_since_signup")
            .collect()
        )
        return publish(context, conn, pipeline, frame, observation, started, markdown_table(frame, limit=15))


@dg.asset(
    key=marts("high_risk_months"),
    deps=[marts("retention_curve")],
    group_name="cohorts",
    kinds={"polars", "duckdb", "parquet"},
)
def high_risk_months(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Lifetime months whose churn hazard is significantly above what neighbouring months predict."""
    started = time.perf_counter()
    settings = pipeline.settings()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        curve = conn.sql("select * from marts.retention_curve").pl()
        frame = high_risk.high_risk_months(curve, settings.high_risk, settings.inactivity_days)
        flagged = frame.filter(pl.col("is_high_risk"))
        preview = (
            markdown_table(flagged.select("basis", "months_since_signup", "at_risk", "hazard", "baseline_hazard", "lift", "p_value"))
            if flagged.height
            else "_no high-risk lifetime month_"
        )
        return publish(context, conn, pipeline, frame, observation, started, preview)


cohort_assets = [cohort_retention, retention_curve, high_risk_months]
