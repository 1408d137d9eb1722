"""Monthly signup cohorts: retention by lifetime month, for both bases.

Heavy per-event work happens in the SQL models; here spells and MRR intervals are turned
into per-cohort counts by adding +1 where a spell starts and -1 where it ends and taking a
running sum over lifetime months, so no customer-by-month spine is ever built.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from churn_pipeline.lib.months import month_index_grid, months_between

K = "months_since_signup"
COHORT_KEYS = ["basis", "cohort_month"]


def _observed_customers(customers: pl.LazyFrame, last_complete_month: date) -> pl.LazyFrame:
    return customers.filter(pl.col("cohort_month") <= pl.lit(last_complete_month))


def cohort_sizes(customers: pl.LazyFrame, last_complete_month: date) -> pl.LazyFrame:
    return (
        _observed_customers(customers, last_complete_month)
        .group_by(COHORT_KEYS)
        .agg(pl.len().cast(pl.Int64).alias("cohort_size"))
        .with_columns(months_between(pl.col("cohort_month"), pl.lit(last_complete_month)).alias("last_k"))
    )


def _running_total(intervals: pl.LazyFrame, weight: pl.Expr, name: str) -> pl.LazyFrame:
    """Sum of `weight` over intervals [start_k, end_k) covering each (cohort, k)."""
    starts = intervals.select([*COHORT_KEYS, pl.col("start_k").alias(K), weight.alias("delta")])
    ends = intervals.filter(pl.col("end_k").is_not_null()).select(
        [*COHORT_KEYS, pl.col("end_k").alias(K), (-weight).alias("delta")]
    )
    return pl.concat([starts, ends]).group_by([*COHORT_KEYS, K]).agg(pl.col("delta").sum().alias(name))


def _cumulate(grid: pl.LazyFrame, deltas: pl.LazyFrame, name: str) -> pl.LazyFrame:
    return (
        grid.join(deltas, on=[*COHORT_KEYS, K], how="left")
        .with_columns(pl.col(name).fill_null(0))
        .sort([*COHORT_KEYS, K])
        .with_columns(pl.col(name).cum_sum().over(COHORT_KEYS))
    )


def _with_cohort(frame: pl.LazyFrame, customers: pl.LazyFrame, basis: str) -> pl.LazyFrame:
    cohorts = customers.filter(pl.col("basis") == basis).select("basis", "customer_id", "cohort_month")
    return frame.join(cohorts, on="customer_id", how="inner")


def subscription_retention(
    grid: pl.LazyFrame, customers: pl.LazyFrame, spells: pl.LazyFrame, mrr_segments: pl.LazyFrame
) -> pl.LazyFrame:
    """Active at the end of month k = inside a spell at that instant; revenue = MRR held then."""
    spell_intervals = _with_cohort(
        spells.filter(pl.col("basis") == "subscription").drop("basis"), customers, "subscription"
    ).select(
        *COHORT_KEYS,
        months_between(pl.col("cohort_month"), pl.col("spell_start_month")).alias("start_k"),
        months_between(pl.col("cohort_month"), pl.col("spell_end_month")).alias("end_k"),
    )
    mrr_intervals = _with_cohort(mrr_segments, customers, "subscription").select(
        *COHORT_KEYS,
        pl.col("mrr"),
        months_between(pl.col("cohort_month"), pl.col("segment_start_month")).alias("start_k"),
        months_between(pl.col("cohort_month"), pl.col("segment_end_month")).alias("end_k"),
    )
    sub_grid = grid.filter(pl.col("basis") == "subscription")
    active = _cumulate(sub_grid, _running_total(spell_intervals, pl.lit(1, pl.Int64), "active_customers"), "active_customers")
    revenue = _cumulate(sub_grid, _running_total(mrr_intervals, pl.col("mrr"), "revenue"), "revenue")
    return active.join(revenue, on=[*COHORT_KEYS, K], how="left")


def orders_retention(grid: pl.LazyFrame, customers: pl.LazyFrame, order_months: pl.LazyFrame) -> pl.LazyFrame:
    """Active in month k = at least one positive order in it; revenue = net order revenue."""
    per_month = (
        _with_cohort(order_months, customers, "orders")
        .with_columns(months_between(pl.col("cohort_month"), pl.col("order_month")).alias(K))
        .filter(pl.col(K) >= 0)
        .group_by([*COHORT_KEYS, K])
        .agg(
            pl.col("is_active").sum().cast(pl.Int64).alias("active_customers"),
            pl.col("revenue").sum().alias("revenue"),
        )
    )
    return (
        grid.filter(pl.col("basis") == "orders")
        .join(per_month, on=[*COHORT_KEYS, K], how="left")
        .with_columns(pl.col("active_customers").fill_null(0), pl.col("revenue").fill_null(0.0))
    )


def cohort_retention(
    customers: pl.LazyFrame,
    spells: pl.LazyFrame,
    mrr_segments: pl.LazyFrame,
    order_months: pl.LazyFrame,
    last_complete_month: date,
) -> pl.LazyFrame:
    """The contract's cohort_retention: one row per basis, cohort and observed lifetime month."""
    sizes = cohort_sizes(customers, last_complete_month)
    grid = month_index_grid(sizes, COHORT_KEYS, "last_k", K)
    observed = _observed_customers(customers, last_complete_month)
    columns = [*COHORT_KEYS, K, "active_customers", "revenue"]
    both = pl.concat(
        [
            subscription_retention(grid, observed, spells, mrr_segments).select(columns),
            orders_retention(grid, observed, order_months).select(columns),
        ]
    )
    return (
        both.join(sizes.drop("last_k"), on=COHORT_KEYS)
        .with_columns(pl.col("revenue").round(6))
        .with_columns(
            (pl.col("active_customers") / pl.col("cohort_size")).alias("retention_rate"),
            pl.col("revenue").first().over(COHORT_KEYS, order_by=K).alias("_month0_revenue"),
        )
        .with_columns(
            pl.when(pl.col("_month0_revenue") != 0)
            .then(pl.col("revenue") / pl.col("_month0_revenue"))
            .alias("revenue_retention")
        )
        .select(
            "basis",
            "cohort_month",
            pl.col(K).cast(pl.Int32),
            "cohort_size",
            "active_customers",
            "retention_rate",
            "revenue",
            "revenue_retention",
        )
        .sort("basis", "cohort_month", K)
    )
