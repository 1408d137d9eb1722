"""Kaplan-Meier survival by lifetime month, for any grouping of customers.

Input: counts of customers (`customers`) per group, `last_observed_lifetime_month` (the last
lifetime month that is complete at as_of) and `first_churn_lifetime_month` (null if no first
churn yet), as the SQL models int_survival_counts and int_signup_counts hold them: bounded by
the calendar, not by customers. A first churn in a month that is not observed yet is
censoring, not churn.
"""

from __future__ import annotations

import polars as pl

from churn_pipeline.lib.probability import Z_95


def _exits(counts: pl.LazyFrame) -> pl.LazyFrame:
    churn_k = pl.col("first_churn_lifetime_month")
    last_k = pl.col("last_observed_lifetime_month")
    observed_churn = pl.when(churn_k.is_not_null() & (churn_k <= last_k)).then(churn_k)
    return counts.filter(last_k >= 0).with_columns(
        observed_churn.cast(pl.Int32).alias("churn_k"),
        pl.min_horizontal(last_k, observed_churn).cast(pl.Int32).alias("exit_k"),
    )


def life_table(counts: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """at_risk, churned, hazard, survival and a 95 % band per group and lifetime month.

    at_risk(k) = customers observed in month k who had not first-churned before k;
    churned(k) = those of them who first-churned in k. Only months with at_risk > 0.
    The band is Greenwood's variance on the log(-log) scale (as lifelines does).
    """
    exits = _exits(counts)
    k = "months_since_signup"
    leaving = exits.group_by([*by, "exit_k"]).agg(pl.col("customers").sum().alias("leaving")).rename({"exit_k": k})
    churned = (
        exits.filter(pl.col("churn_k").is_not_null())
        .group_by([*by, "churn_k"])
        .agg(pl.col("customers").sum().alias("churned"))
        .rename({"churn_k": k})
    )
    grid = (
        exits.group_by(by)
        .agg(pl.col("exit_k").max().alias("last_k"))
        .with_columns(pl.int_ranges(0, pl.col("last_k") + 1, dtype=pl.Int32).alias(k))
        .explode(k)
        .drop("last_k")
    )
    table = (
        grid.join(leaving, on=[*by, k], how="left")
        .join(churned, on=[*by, k], how="left")
        .with_columns(pl.col("leaving", "churned").fill_null(0).cast(pl.Int64))
        .sort([*by, k])
        .with_columns(
            pl.col("leaving").reverse().cum_sum().reverse().over(by).alias("at_risk"),
        )
        .filter(pl.col("at_risk") > 0)
        .with_columns((pl.col("churned") / pl.col("at_risk")).alias("hazard"))
        .with_columns(
            (1 - pl.col("hazard")).cum_prod().over(by).alias("survival"),
            (
                pl.when(pl.col("at_risk") > pl.col("churned"))
                .then(pl.col("churned") / (pl.col("at_risk") * (pl.col("at_risk") - pl.col("churned"))))
                .otherwise(float("inf"))
            )
            .cum_sum()
            .over(by)
            .alias("_greenwood"),
        )
    )
    return table.with_columns(*_log_log_band()).drop("leaving", "_greenwood")


def _log_log_band() -> list[pl.Expr]:
    s = pl.col("survival")
    log_s = s.log()
    # sd of log(-log S); undefined at S = 1 (no churn yet) and S = 0 (everyone churned)
    sd = pl.col("_greenwood").sqrt() / log_s.abs()
    interior = (s > 0) & (s < 1)
    low = pl.when(interior).then(s.pow((Z_95 * sd).exp())).otherwise(s)
    high = pl.when(interior).then(s.pow((-Z_95 * sd).exp())).otherwise(s)
    return [low.alias("survival_ci_low"), high.alias("survival_ci_high")]


def survival_at(table: pl.LazyFrame, by: list[str], months: list[int]) -> pl.LazyFrame:
    """Survival at the end of each lifetime month in `months`, one column per month.

    A survival that has reached 0 stays 0; past the last month anyone was at risk
    (everyone still alive was censored) it is unknown, so null.
    """
    k = "months_since_signup"
    columns = []
    for month in months:
        last_known = pl.col("survival").filter(pl.col(k) <= month).last()
        reached_zero = (pl.col("survival").filter(pl.col(k) <= month) == 0).any()
        observed = (pl.col(k) == month).any()
        columns.append(
            pl.when(reached_zero).then(pl.lit(0.0)).when(observed).then(last_known).otherwise(None).alias(f"retention_m{month}")
        )
    return table.group_by(by).agg(columns)
