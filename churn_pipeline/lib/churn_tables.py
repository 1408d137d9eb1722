"""Churn by cohort, channel, segment and calendar month (contract section 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from churn_pipeline.lib import survival
from churn_pipeline.lib.probability import Z_95, binom_cdf, binom_sf, normal_sf
from churn_pipeline.lib.table_docs import MONTHLY_FLOWS, TABLES_BY_NAME

K = "months_since_signup"
RETENTION_MONTHS = [1, 3, 6, 12]


def grouping(counts: pl.LazyFrame, dimension: str, name: str) -> pl.LazyFrame:
    """int_survival_counts' rows for one grouping, its `value` named `name`."""
    return counts.filter(pl.col("dimension") == dimension).rename({"value": name}).drop("dimension")


def _exposure(counts: pl.LazyFrame, by: list[str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per group: customers, first churns in observed months and customer-months at risk."""
    # collected once: polars would otherwise read the counts for each of the four plans below
    counts = counts.select(*by, "first_churn_lifetime_month", "last_observed_lifetime_month", "customers").collect().lazy()
    table = survival.life_table(counts, by)
    totals = table.group_by(by).agg(
        pl.col("churned").sum().alias("customers_churned"),
        pl.col("at_risk").sum().alias("customer_months"),
    )
    sizes = counts.group_by(by).agg(pl.col("customers").sum().cast(pl.Int64).alias("customers"))
    frame = (
        sizes.join(totals, on=by, how="left")
        .with_columns(pl.col("customers_churned", "customer_months").fill_null(0).cast(pl.Int64))
        .with_columns(
            pl.when(pl.col("customer_months") > 0)
            .then(pl.col("customers_churned") / pl.col("customer_months"))
            .alias("monthly_churn_rate")
        )
    )
    return frame, table


def churn_by_cohort(counts: pl.LazyFrame, cohort_retention: pl.LazyFrame) -> pl.DataFrame:
    """Exposure-based monthly churn per cohort; retention at 1/3/6/12 months from cohort_retention.
    `counts` is int_survival_counts, as for every table below built on the life table."""
    by = ["basis", "cohort_month"]
    cohorts = grouping(counts, "cohort_month", "cohort_month").with_columns(pl.col("cohort_month").str.to_date())
    frame, _ = _exposure(cohorts, by)
    retention = cohort_retention.group_by(by).agg(
        [pl.col("retention_rate").filter(pl.col(K) == m).first().alias(f"retention_m{m}") for m in RETENTION_MONTHS]
    )
    return (
        frame.rename({"customers": "cohort_size"})
        .join(retention, on=by, how="left")
        .select(
            *by,
            "cohort_size",
            "customers_churned",
            "customer_months",
            "monthly_churn_rate",
            *[f"retention_m{m}" for m in RETENTION_MONTHS],
        )
        .sort(by)
        .collect()
    )


def _versus_others(frame: pl.DataFrame, group: str) -> pl.DataFrame:
    """Each group's churn rate against all other groups of its basis pooled.

    rate_ratio = rate(group) / rate(others); 95 % interval on the log scale
    (sqrt(1/d1 + 1/d0)); p-value: exact two-sided test that, given both groups' churns,
    the group's share matches its share of customer-months (conditional binomial).
    """
    totals = frame.group_by("basis").agg(
        pl.col("customers_churned").sum().alias("_d_all"), pl.col("customer_months").sum().alias("_t_all")
    )
    joined = frame.join(totals, on="basis").with_columns(
        (pl.col("_d_all") - pl.col("customers_churned")).alias("_d_other"),
        (pl.col("_t_all") - pl.col("customer_months")).alias("_t_other"),
    )
    d1 = joined["customers_churned"].to_numpy().astype(float)
    t1 = joined["customer_months"].to_numpy().astype(float)
    d0 = joined["_d_other"].to_numpy().astype(float)
    t0 = joined["_t_other"].to_numpy().astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = (t1 > 0) & (t0 > 0) & (d0 > 0)
        ratio = np.where(valid, (d1 / t1) / (d0 / t0), np.nan)
        half = Z_95 * np.sqrt(1 / d1 + 1 / d0)
        has_interval = valid & (d1 > 0)
        low = np.where(has_interval, ratio * np.exp(-half), np.nan)
        high = np.where(has_interval, ratio * np.exp(half), np.nan)
        n = (d1 + d0).astype(int)
        share = t1 / (t1 + t0)
        tail = np.minimum(binom_cdf(d1, n, share), binom_sf(d1 - 1, n, share))
        p = np.where((t1 > 0) & (t0 > 0) & (n > 0), np.minimum(1.0, 2 * tail), np.nan)
    return joined.drop("_d_all", "_t_all", "_d_other", "_t_other").with_columns(
        pl.Series("rate_ratio_vs_others", ratio).fill_nan(None),
        pl.Series("rate_ratio_ci_low", low).fill_nan(None),
        pl.Series("rate_ratio_ci_high", high).fill_nan(None),
        pl.Series("p_value_vs_others", p).fill_nan(None),
    )


def _group_table(counts: pl.LazyFrame, group: str) -> pl.DataFrame:
    by = ["basis", group]
    frame, table = _exposure(counts, by)
    retention = survival.survival_at(table, by, RETENTION_MONTHS)
    joined = frame.join(retention, on=by, how="left").sort(by).collect()
    return _versus_others(joined, group).select(
        *by,
        "customers",
        "customers_churned",
        "customer_months",
        "monthly_churn_rate",
        *[f"retention_m{m}" for m in RETENTION_MONTHS],
        "rate_ratio_vs_others",
        "rate_ratio_ci_low",
        "rate_ratio_ci_high",
        "p_value_vs_others",
    )


def churn_by_channel(counts: pl.LazyFrame) -> pl.DataFrame:
    """Churn per acquisition channel (Kaplan-Meier retention within the channel; no channel: `unknown`)."""
    return _group_table(grouping(counts, "channel", "channel"), "channel")


def value_tier_label(tier: pl.Expr, bound: pl.Expr) -> pl.Expr:
    """`Q1 (<= 20.0)` ... `Q4 (> 50.0)`: the quartile of value at signup within the basis and its
    upper bound (Q4: above Q3's), as int_survival_counts assigns them."""
    text = bound.round(2).cast(pl.String)
    return (
        pl.when(tier == "Q4")
        .then(tier + pl.lit(" (> ") + text + pl.lit(")"))
        .when(bound.is_not_null())
        .then(tier + pl.lit(" (<= ") + text + pl.lit(")"))
        .otherwise(tier)
    )


SEGMENT_DIMENSIONS = ("segment", "signup_plan", "value_tier")


def churn_by_segment(counts: pl.LazyFrame) -> pl.DataFrame:
    """churn_by_channel's metrics for every other customer dimension, with a `dimension` column."""
    labelled = counts.filter(pl.col("dimension").is_in(SEGMENT_DIMENSIONS)).with_columns(
        pl.when(pl.col("dimension") == "value_tier")
        .then(value_tier_label(pl.col("value"), pl.col("value_tier_bound")))
        .otherwise(pl.col("value"))
        .alias("value")
    )
    frames = [
        _group_table(grouping(labelled, dimension, "value"), "value").with_columns(pl.lit(dimension).alias("dimension"))
        for dimension in SEGMENT_DIMENSIONS
    ]
    metrics = [c for c in frames[0].columns if c not in ("basis", "value", "dimension")]
    return pl.concat(frames).select("basis", "dimension", "value", *metrics).sort("basis", "dimension", "value")


@dataclass(frozen=True)
class BenchmarkBands:
    """Monthly customer churn levels (common SaaS references); upper bounds, inclusive."""

    healthy: float = 0.03
    acceptable_while_young: float = 0.05
    typical: float = 0.08
    high: float = 0.15

    def expression(self, rate: pl.Expr) -> pl.Expr:
        return (
            pl.when(rate.is_null())
            .then(None)
            .when(rate <= self.healthy)
            .then(pl.lit("healthy"))
            .when(rate <= self.acceptable_while_young)
            .then(pl.lit("acceptable while young"))
            .when(rate <= self.typical)
            .then(pl.lit("typical, worth work"))
            .when(rate <= self.high)
            .then(pl.lit("high"))
            .otherwise(pl.lit("emergency"))
        )


def _trend(churned: np.ndarray, at_start: np.ndarray, window: int, alpha: float) -> tuple[list, list]:
    """Cochran-Armitage test for a trend in monthly churn over the last `window` months."""
    directions, p_values = [], []
    for end in range(len(churned)):
        start = end - window + 1
        d, n = churned[max(start, 0) : end + 1], at_start[max(start, 0) : end + 1]
        if start < 0 or (n <= 0).any() or d.sum() == 0 or d.sum() == n.sum():
            directions.append(None)
            p_values.append(None)
            continue
        t = np.arange(window, dtype=float)
        p_bar = d.sum() / n.sum()
        statistic = float(np.sum(t * (d - n * p_bar)))
        variance = p_bar * (1 - p_bar) * (np.sum(n * t**2) - np.sum(n * t) ** 2 / n.sum())
        z = statistic / math.sqrt(variance)
        p = float(2 * normal_sf(abs(z)))
        p_values.append(p)
        directions.append("flat" if p >= alpha else ("rising" if z > 0 else "falling"))
    return directions, p_values


def _churn_rates() -> list[pl.Expr]:
    """Customer churn rate and gross / net MRR churn rates, from a period's stocks and flows."""
    mrr_start = pl.col("mrr_start")
    lost = pl.col("churned_mrr") + pl.col("contraction_mrr")
    return [
        pl.when(pl.col("customers_start") > 0).then(pl.col("churned") / pl.col("customers_start")).alias("customer_churn_rate"),
        pl.when(mrr_start > 0).then(lost / mrr_start).alias("gross_mrr_churn_rate"),
        pl.when(mrr_start > 0)
        .then((lost - pl.col("expansion_mrr") - pl.col("reactivation_mrr")) / mrr_start)
        .alias("net_mrr_churn_rate"),
    ]


def _saas_metrics(revenue_retention: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.Expr]]:
    """ARR, ARPA, Quick Ratio, LTV and 12-month net / gross revenue retention (subscription basis)."""
    retention = revenue_retention.select(
        pl.lit("subscription").alias("basis"),
        "month",
        pl.when(pl.col("mrr_12m_before") > 0)
        .then(pl.col("mrr_now_of_those") / pl.col("mrr_12m_before"))
        .alias("net_revenue_retention_12m"),
        pl.when(pl.col("mrr_12m_before") > 0)
        .then(pl.col("mrr_now_of_those_capped") / pl.col("mrr_12m_before"))
        .alias("gross_revenue_retention_12m"),
    )
    subscription = pl.col("basis") == "subscription"
    arpa = pl.when(subscription & (pl.col("customers_end") > 0)).then(pl.col("mrr_end") / pl.col("customers_end"))
    gained = pl.col("new_mrr") + pl.col("expansion_mrr") + pl.col("reactivation_mrr")
    lost = pl.col("contraction_mrr") + pl.col("churned_mrr")
    metrics = [
        pl.when(subscription).then(12 * pl.col("mrr_end")).alias("arr"),
        arpa.alias("arpa"),
        pl.when(subscription & (lost > 0)).then(gained / lost).alias("quick_ratio"),
        pl.when(pl.col("customer_churn_rate") > 0).then(arpa / pl.col("customer_churn_rate")).alias("ltv"),
    ]
    return retention, metrics


def churn_by_month(
    movements: pl.DataFrame,
    revenue_retention: pl.DataFrame,
    bands: BenchmarkBands = BenchmarkBands(),
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Monthly movements with churn rates, MRR churn rates, benchmark band, 3/6-month trends and
    the SaaS metrics (`revenue_retention` is int_revenue_retention)."""
    retention, metrics = _saas_metrics(revenue_retention)
    frame = (
        movements.sort("basis", "month")
        .with_columns(
            *_churn_rates(),
            (pl.col("revenue") - pl.col("new_customer_revenue")).alias("existing_customer_revenue"),
        )
        .with_columns(metrics)
        .join(retention, on=["basis", "month"], how="left")
    )
    frame = frame.with_columns(bands.expression(pl.col("customer_churn_rate")).alias("benchmark_band"))
    parts = []
    for (_basis,), part in frame.group_by(["basis"], maintain_order=True):
        churned = part["churned"].to_numpy().astype(float)
        at_start = part["customers_start"].to_numpy().astype(float)
        columns = {}
        for window in (3, 6):
            directions, p_values = _trend(churned, at_start, window, alpha)
            columns[f"trend_{window}m"] = pl.Series(directions, dtype=pl.String)
            columns[f"trend_{window}m_p_value"] = pl.Series(p_values, dtype=pl.Float64)
        parts.append(part.with_columns(**columns))
    columns = [c for c in TABLES_BY_NAME["churn_by_month"].columns if c != "as_of"]  # the mart adds as_of
    if not parts:  # no complete month yet
        trend_columns = {f"trend_{w}m": pl.String for w in (3, 6)} | {f"trend_{w}m_p_value": pl.Float64 for w in (3, 6)}
        return frame.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in trend_columns.items()).select(columns)
    return pl.concat(parts).select(columns).with_columns(pl.selectors.float().round(6))


SUMMED = list(MONTHLY_FLOWS)


def churn_by_quarter(monthly: pl.DataFrame, bands: BenchmarkBands = BenchmarkBands()) -> pl.DataFrame:
    """Complete calendar quarters: flows summed, stocks at the quarter's start and end.

    customer_churn_rate is churned in the quarter / customers at its start (customers who
    join and leave within the quarter count in both flows); monthly_equivalent_churn_rate
    = 1 - (1 - quarterly rate)^(1/3) for comparing with the monthly bands.
    """
    frame = monthly.with_columns(pl.col("month").dt.truncate("1q").alias("quarter")).sort("basis", "month")
    quarterly = frame.group_by("basis", "quarter", maintain_order=True).agg(
        pl.len().alias("_months"),
        pl.col("customers_start").first(),
        pl.col("customers_end").last(),
        pl.col("mrr_start").first(),
        pl.col("mrr_end").last(),
        *[pl.when(pl.col(c).is_null().all()).then(None).otherwise(pl.col(c).sum()).alias(c) for c in SUMMED],
    )
    return (
        quarterly.filter(pl.col("_months") == 3)
        .drop("_months")
        .with_columns(*_churn_rates())
        .with_columns((1 - (1 - pl.col("customer_churn_rate")).clip(0, 1).pow(1 / 3)).alias("monthly_equivalent_churn_rate"))
        .with_columns(bands.expression(pl.col("monthly_equivalent_churn_rate")).alias("benchmark_band"))
        .with_columns(pl.selectors.float().round(6))
        .sort("basis", "quarter")
    )


RETURN_WINDOWS = (30, 60, 90)


def churn_reactivation(counts: pl.DataFrame) -> pl.DataFrame:
    """ "Satisfied" churn: of churned customers, the share back within 30/60/90 days.

    One row per basis, dimension (`all`, `cohort`, `channel`) and value, from
    int_reactivation_counts. A churn counts in the N-day share only when N days after it are
    observed (churned_at + N days <= as_of), so recent churns never look like customers who
    did not come back.
    """
    shares = [
        pl.when(pl.col(f"churns_observed_{w}d") > 0)
        .then(pl.col(f"returned_{w}d") / pl.col(f"churns_observed_{w}d"))
        .alias(f"returned_within_{w}d_share")
        for w in RETURN_WINDOWS
    ]
    return (
        counts.with_columns(shares)
        .select(
            "basis",
            "dimension",
            "value",
            "churns",
            "returned_ever",
            *[c for w in RETURN_WINDOWS for c in (f"churns_observed_{w}d", f"returned_{w}d", f"returned_within_{w}d_share")],
            "median_days_to_return",
            "mean_days_to_return",
        )
        .with_columns(pl.selectors.float().round(6))
        .sort("basis", "dimension", "value")
    )
