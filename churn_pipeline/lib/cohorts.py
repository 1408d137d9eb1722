"""Monthly signup cohorts: retention by lifetime month, for both bases.

The SQL model int_cohort_activity sums spells, MRR intervals and order months per cohort and
interval of months; here each interval adds its customers and revenue where it starts and
takes them away where it ends, and a running sum over lifetime months gives each cell, so
no customer-by-month spine is ever built.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from churn_pipeline.lib.months import month_index_grid, months_between

K = "months_since_signup"
COHORT_KEYS = ["basis", "cohort_month"]


def cohort_sizes(counts: pl.LazyFrame, last_complete_month: date) -> pl.LazyFrame:
    """Customers per observed cohort, from int_survival_counts (which counts observed cohorts only)."""
    return (
        counts.filter(pl.col("dimension") == "cohort_month")
        .group_by("basis", pl.col("value").str.to_date().alias("cohort_month"))
        .agg(pl.col("customers").sum().cast(pl.Int64).alias("cohort_size"))
        .with_columns(months_between(pl.col("cohort_month"), pl.lit(last_complete_month)).alias("last_k"))
    )


def _running_totals(intervals: pl.LazyFrame, weights: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Each weight's change at each (cohort, k): + where an interval [start_k, end_k) starts, - where it ends."""
    starts = intervals.select([*COHORT_KEYS, pl.col("start_k").alias(K), *(w.alias(n) for n, w in weights.items())])
    ends = intervals.filter(pl.col("end_k").is_not_null()).select(
        [*COHORT_KEYS, pl.col("end_k").alias(K), *((-w).alias(n) for n, w in weights.items())]
    )
    return pl.concat([starts, ends]).group_by([*COHORT_KEYS, K]).agg(pl.col(list(weights)).sum())


def _cumulate(grid: pl.LazyFrame, deltas: pl.LazyFrame, names: list[str]) -> pl.LazyFrame:
    return (
        grid.join(deltas, on=[*COHORT_KEYS, K], how="left")
        .with_columns(pl.col(names).fill_null(0))
        .sort([*COHORT_KEYS, K])
        .with_columns(pl.col(names).cum_sum().over(COHORT_KEYS))
    )


def cohort_retention(counts: pl.LazyFrame, activity: pl.LazyFrame, last_complete_month: date) -> pl.LazyFrame:
    """The contract's cohort_retention: one row per basis, cohort and observed lifetime month.

    `counts` is int_survival_counts (cohort sizes); `activity` is int_cohort_activity:
    customers and revenue per cohort and interval of months.
    subscription: active at the end of month k = inside a spell then; revenue = MRR held then.
    orders: active in month k = a positive order in it; revenue = the month's net order revenue.
    """
    sizes = cohort_sizes(counts, last_complete_month)
    grid = month_index_grid(sizes, COHORT_KEYS, "last_k", K)
    intervals = activity.select(
        *COHORT_KEYS,
        "customers",
        "revenue",
        months_between(pl.col("cohort_month"), pl.col("start_month")).alias("start_k"),
        months_between(pl.col("cohort_month"), pl.col("end_month")).alias("end_k"),
    )
    weights = {"active_customers": pl.col("customers"), "revenue": pl.col("revenue")}
    return (
        _cumulate(grid, _running_totals(intervals, weights), list(weights))
        .join(sizes.drop("last_k"), on=COHORT_KEYS)
        # the running sum leaves float dust where intervals cancel: round it, and -0.0 to 0.0
        .with_columns(pl.col("revenue").round(6))
        .with_columns(pl.when(pl.col("revenue") == 0).then(0.0).otherwise(pl.col("revenue")).alias("revenue"))
        .with_columns(
            (pl.col("active_customers") / pl.col("cohort_size")).alias("retention_rate"),
            pl.col("revenue").first().over(COHORT_KEYS, order_by=K).alias("_month0_revenue"),
        )
        .with_columns(
            pl.when(pl.col("_month0_revenue") != 0).then(pl.col("revenue") / pl.col("_month0_revenue")).alias("revenue_retention")
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
