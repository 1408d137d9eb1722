"""Churn before and after price changes (contract: churn_by_price_change).

Prices are compared as MRR (monthly equivalent in the reporting currency), so a yearly
plan at 240 and a monthly one at 20 are the same price. Two kinds:
- existing_customers: the business repriced a plan (`price_changed` events). Before = the
  monthly churn rate of the plan's customers over the `window_months` before the change
  month; after = that of the repriced customers from the change month on. (Before is
  measured on everyone then on the plan: the repriced customers themselves cannot have
  churned before it, as they were still there to be repriced.)
- new_signups: the plan's signup price (the most common MRR at `subscribed`) differs
  from the previous month's. Before / after = monthly churn over the first `window_months`
  lifetime months of customers who signed up in the `window_months` before at the old price
  / from the change month on at the new price.
Unaffected comparison: customers on other plans over the same windows (for new_signups:
other plans' signups in the same months). relative_lift = lift / unaffected_lift, with a
two-sided p-value for it (difference of log rate ratios, Poisson variances); p_value_after_vs_before
tests the affected customers' own change (exact conditional binomial).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from churn_pipeline.lib import survival
from churn_pipeline.lib.months import months_between
from churn_pipeline.lib.probability import binom_cdf, binom_sf, normal_sf

KEYS = ["plan", "change_month", "change_kind"]


def _signup_price_changes(signups: pl.LazyFrame) -> pl.LazyFrame:
    """Months whose most common signup MRR (rounded to cents; the lower on a tie) differs from the previous month's."""
    per_price = (
        signups.filter(pl.col("signup_plan").is_not_null())
        .group_by("signup_plan", "cohort_month", pl.col("signup_mrr").round(2).alias("price"))
        .agg(pl.col("customers").sum())
    )
    modal = (
        per_price.filter(pl.col("customers") == pl.col("customers").max().over("signup_plan", "cohort_month"))
        .group_by("signup_plan", "cohort_month")
        .agg(pl.col("price").min())
        .sort("signup_plan", "cohort_month")
        .with_columns(
            pl.col("price").shift(1).over("signup_plan").alias("old_price"),
            pl.col("cohort_month").shift(1).over("signup_plan").alias("previous_month"),
        )
    )
    return modal.filter(
        pl.col("old_price").is_not_null()
        & (pl.col("price") != pl.col("old_price"))
        & (months_between(pl.col("previous_month"), pl.col("cohort_month")) == 1)
    ).select(
        pl.col("signup_plan").alias("plan"),
        pl.col("cohort_month").alias("change_month"),
        pl.lit("new_signups").alias("change_kind"),
        "old_price",
        pl.col("price").alias("new_price"),
    )


def _new_signup_exposure(signups: pl.LazyFrame, changes: pl.LazyFrame, window: int) -> pl.LazyFrame:
    """customer_months and churned over the first `window` lifetime months, per change, role and period."""
    offset = months_between(pl.col("change_month"), pl.col("cohort_month"))
    labelled = (
        signups.join(changes, how="cross")
        .with_columns(offset.alias("_offset"))
        .filter((pl.col("_offset") >= -window) & (pl.col("_offset") < window))
        .with_columns(pl.when(pl.col("_offset") < 0).then(pl.lit("before")).otherwise(pl.lit("after")).alias("period"))
        .with_columns(
            pl.when(
                (pl.col("signup_plan") == pl.col("plan"))
                & (
                    pl.col("signup_mrr").round(2)
                    == pl.when(pl.col("period") == "before").then(pl.col("old_price")).otherwise(pl.col("new_price"))
                )
            )
            .then(pl.lit("affected"))
            .when(pl.col("signup_plan") != pl.col("plan"))
            .then(pl.lit("unaffected"))
            .alias("role")
        )
        .filter(pl.col("role").is_not_null())
    )
    by = [*KEYS, "role", "period"]
    table = survival.life_table(labelled, by).filter(pl.col("months_since_signup") < window)
    affected_counts = (
        labelled.filter((pl.col("role") == "affected") & (pl.col("period") == "after"))
        .group_by(KEYS)
        .agg(pl.col("customers").sum().cast(pl.Int64).alias("customers_affected"))
    )
    return (
        table.group_by(by)
        .agg(pl.col("at_risk").sum().alias("customer_months"), pl.col("churned").sum())
        .join(changes.select(*KEYS, "old_price", "new_price"), on=KEYS)
        .join(affected_counts, on=KEYS, how="left")
    )


def _rate_tests(frame: pl.DataFrame) -> pl.DataFrame:
    def counts(role: str, period: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            frame[f"churned_{role}_{period}"].fill_null(0).to_numpy().astype(float),
            frame[f"customer_months_{role}_{period}"].fill_null(0).to_numpy().astype(float),
        )

    a1, t_a1 = counts("affected", "after")
    a0, t_a0 = counts("affected", "before")
    u1, t_u1 = counts("unaffected", "after")
    u0, t_u0 = counts("unaffected", "before")
    with np.errstate(divide="ignore", invalid="ignore"):
        all_positive = (a1 > 0) & (a0 > 0) & (u1 > 0) & (u0 > 0)
        log_relative = np.log(a1 / t_a1) - np.log(a0 / t_a0) - np.log(u1 / t_u1) + np.log(u0 / t_u0)
        z = log_relative / np.sqrt(1 / a1 + 1 / a0 + 1 / u1 + 1 / u0)
        p_relative = np.where(all_positive, 2 * normal_sf(np.abs(z)), np.nan)
        n = (a1 + a0).astype(int)
        share = t_a1 / (t_a1 + t_a0)
        tail = np.minimum(binom_cdf(a1, n, share), binom_sf(a1 - 1, n, share))
        p_own = np.where((t_a1 > 0) & (t_a0 > 0) & (n > 0), np.minimum(1.0, 2 * tail), np.nan)
    return frame.with_columns(
        pl.Series("p_value", p_relative).fill_nan(None),
        pl.Series("p_value_after_vs_before", p_own).fill_nan(None),
    )


def _rate(role: str, period: str) -> pl.Expr:
    months = pl.col(f"customer_months_{role}_{period}")
    return pl.when(months > 0).then(pl.col(f"churned_{role}_{period}") / months)


def churn_by_price_change(existing_exposure: pl.LazyFrame, signups: pl.LazyFrame, window: int) -> pl.DataFrame:
    """One row per detected price change with before/after churn, the unaffected comparison and
    p-values, from int_price_change_exposure and int_signup_counts."""
    existing = existing_exposure.with_columns(pl.lit("existing_customers").alias("change_kind")).select(
        *KEYS, "old_price", "new_price", "customers_affected", "role", "period", "customer_months", "churned"
    )
    # collected once: each plan below would read the warehouse again
    subscribers = signups.collect().lazy()
    changes = _signup_price_changes(subscribers).collect().lazy()
    new = _new_signup_exposure(subscribers, changes, window).select(
        *KEYS, "old_price", "new_price", "customers_affected", "role", "period", "customer_months", "churned"
    )
    long = (
        pl.concat([existing, new], how="vertical_relaxed")
        .with_columns(pl.col("customer_months", "churned").cast(pl.Int64), pl.col("customers_affected").cast(pl.Int64))
        .collect()
    )
    columns = [
        "churned_affected_before",
        "customer_months_affected_before",
        "churned_affected_after",
        "customer_months_affected_after",
        "churned_unaffected_before",
        "customer_months_unaffected_before",
        "churned_unaffected_after",
        "customer_months_unaffected_after",
    ]
    if long.is_empty():
        wide = pl.DataFrame(
            schema={
                "plan": pl.String,
                "change_month": pl.Date,
                "change_kind": pl.String,
                "old_price": pl.Float64,
                "new_price": pl.Float64,
                "customers_affected": pl.Int64,
                **{c: pl.Int64 for c in columns},
            }
        )
    else:
        wide = long.pivot(
            on=["role", "period"],
            index=[*KEYS, "old_price", "new_price", "customers_affected"],
            values=["churned", "customer_months"],
            separator="_",
        )
        wide = wide.rename({c: c.replace('{"', "").replace('","', "_").replace('"}', "") for c in wide.columns})
        for column in columns:
            if column not in wide.columns:
                wide = wide.with_columns(pl.lit(0, pl.Int64).alias(column))
    frame = (
        wide.with_columns(
            ((pl.col("new_price") - pl.col("old_price")) / pl.col("old_price")).alias("price_change_pct"),
            _rate("affected", "before").alias("churn_rate_before"),
            _rate("affected", "after").alias("churn_rate_after"),
            _rate("unaffected", "before").alias("unaffected_churn_rate_before"),
            _rate("unaffected", "after").alias("unaffected_churn_rate_after"),
        )
        .with_columns(
            pl.when(pl.col("churn_rate_before") > 0).then(pl.col("churn_rate_after") / pl.col("churn_rate_before")).alias("lift"),
            pl.when(pl.col("unaffected_churn_rate_before") > 0)
            .then(pl.col("unaffected_churn_rate_after") / pl.col("unaffected_churn_rate_before"))
            .alias("unaffected_lift"),
        )
        .with_columns(
            pl.when(pl.col("unaffected_lift") > 0).then(pl.col("lift") / pl.col("unaffected_lift")).alias("relative_lift"),
            pl.lit(window, pl.Int32).alias("window_months"),
        )
    )
    return (
        _rate_tests(frame)
        .select(
            *KEYS,
            "old_price",
            "new_price",
            "price_change_pct",
            "customers_affected",
            "window_months",
            "churn_rate_before",
            "churn_rate_after",
            "lift",
            "unaffected_churn_rate_before",
            "unaffected_churn_rate_after",
            "unaffected_lift",
            "relative_lift",
            "p_value",
            "p_value_after_vs_before",
            *columns,
        )
        .with_columns(pl.selectors.float().round(6))
        .sort(*KEYS)
    )
