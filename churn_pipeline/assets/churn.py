"""Churn tables (contract section 4): by cohort, channel, segment, price change, month and quarter."""

import time

import dagster as dg
import polars as pl

from churn_pipeline.assets.cohorts import QUARANTINE, marts, publish, read_frame, read_observation, staging
from churn_pipeline.assets.metadata import markdown_table
from churn_pipeline.lib import churn_tables
from churn_pipeline.lib.price_changes import churn_by_price_change as price_change_table
from churn_pipeline.resources import PipelineConfig, Warehouse

_CUSTOMERS = [staging("int_customers"), staging("int_observation_window"), QUARANTINE]
_KINDS = {"polars", "duckdb", "parquet"}


def _lcm(observation):
    from datetime import date

    return observation.last_complete_month or date(1, 1, 1)


@dg.asset(key=marts("churn_by_cohort"), deps=[*_CUSTOMERS, marts("cohort_retention")], group_name="churn", kinds=_KINDS)
def churn_by_cohort(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Monthly churn rate per signup cohort (churns / customer-months at risk) and retention at 1/3/6/12 months."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_by_cohort(
            read_frame(conn, "staging.int_customers"), read_frame(conn, "marts.cohort_retention"), _lcm(observation)
        )
        return publish(context, conn, pipeline, frame, observation, started, markdown_table(frame.tail(12)))


@dg.asset(key=marts("churn_by_channel"), deps=_CUSTOMERS, group_name="churn", kinds=_KINDS)
def churn_by_channel(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Churn per acquisition channel, each compared with all other channels (rate ratio, 95 % CI, p-value)."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_by_channel(read_frame(conn, "staging.int_customers"), _lcm(observation))
        preview = markdown_table(frame.select("basis", "channel", "customers", "monthly_churn_rate", "rate_ratio_vs_others",
                                              "rate_ratio_ci_low", "rate_ratio_ci_high", "p_value_vs_others"))
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(key=marts("churn_by_segment"), deps=_CUSTOMERS, group_name="churn", kinds=_KINDS)
def churn_by_segment(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """churn_by_channel's metrics by segment, plan at signup and value tier (`dimension` names the grouping)."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_by_segment(read_frame(conn, "staging.int_customers"), _lcm(observation))
        preview = markdown_table(frame.select("basis", "dimension", "value", "customers", "monthly_churn_rate", "rate_ratio_vs_others"), 20)
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(
    key=marts("churn_by_price_change"),
    deps=[*_CUSTOMERS, staging("int_price_change_exposure")],
    group_name="churn",
    kinds=_KINDS,
)
def churn_by_price_change(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Churn before vs after each price change (existing customers repriced, or a new signup price), against unaffected customers."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = price_change_table(
            read_frame(conn, "staging.int_price_change_exposure"),
            read_frame(conn, "staging.int_customers"),
            pipeline.price_change_window_months,
        )
        preview = markdown_table(frame.select("plan", "change_month", "change_kind", "old_price", "new_price", "churn_rate_before",
                                              "churn_rate_after", "lift", "relative_lift", "p_value"))
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(key=marts("churn_by_month"), deps=[staging("int_monthly_movements"), QUARANTINE], group_name="churn", kinds=_KINDS)
def churn_by_month(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Calendar-month customer movements and MRR bridge, churn rates with benchmark band and 3/6-month trend."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_by_month(conn.sql("select * from staging.int_monthly_movements").pl())
        preview = markdown_table(frame.tail(12).select("basis", "month", "customers_start", "churned", "customer_churn_rate",
                                                       "benchmark_band", "trend_3m", "net_mrr_churn_rate"))
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(key=marts("churn_by_quarter"), deps=[marts("churn_by_month")], group_name="churn", kinds=_KINDS)
def churn_by_quarter(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """churn_by_month rolled up to complete calendar quarters."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_by_quarter(conn.sql("select * from marts.churn_by_month").pl())
        preview = markdown_table(frame.select("basis", "quarter", "customers_start", "churned", "customer_churn_rate",
                                              "monthly_equivalent_churn_rate", "benchmark_band"))
        return publish(context, conn, pipeline, frame, observation, started, preview)


@dg.asset(key=marts("churn_reactivation"), deps=[*_CUSTOMERS, staging("int_churn_returns")], group_name="churn", kinds=_KINDS)
def churn_reactivation(context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """"Satisfied" churn: share of churned customers back within 30/60/90 days, and the time to return."""
    started = time.perf_counter()
    with warehouse.get_connection(release_cache=True) as conn:
        observation = read_observation(conn)
        frame = churn_tables.churn_reactivation(read_frame(conn, "staging.int_churn_returns"), read_frame(conn, "staging.int_customers"))
        preview = markdown_table(frame.filter(pl.col("dimension") != "cohort"), 20)
        return publish(context, conn, pipeline, frame, observation, started, preview)


churn_assets = [churn_by_cohort, churn_by_channel, churn_by_segment, churn_by_price_change, churn_by_month,
                churn_by_quarter, churn_reactivation]
