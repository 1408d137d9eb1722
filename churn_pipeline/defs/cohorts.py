"""Cohort tables (contract section 4): cohort_retention, retention_curve, high_risk_months."""

import polars as pl

from churn_pipeline.defs.asset_keys import QUARANTINE, marts, staging
from churn_pipeline.defs.marts import MartInputs, mart
from churn_pipeline.defs.metadata import markdown_table
from churn_pipeline.lib import cohorts, high_risk, survival


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


def _high_risk_preview(frame: pl.DataFrame) -> str:
    flagged = frame.filter(pl.col("is_high_risk"))
    if flagged.is_empty():
        return "_no high-risk lifetime month_"
    return markdown_table(
        flagged.select("basis", "months_since_signup", "at_risk", "hazard", "baseline_hazard", "lift", "p_value")
    )


@mart(
    deps=[staging("int_survival_counts"), staging("int_cohort_activity"), staging("int_observation_window"), QUARANTINE],
    group_name="cohorts",
    preview=lambda frame: "\n\n".join(retention_matrix(frame, basis) for basis in ("subscription", "orders")),
)
def cohort_retention(inputs: MartInputs) -> pl.DataFrame:
    """Customers and revenue retained per signup cohort and lifetime month (observed cells only)."""
    return cohorts.cohort_retention(
        inputs.scan("staging.int_survival_counts"), inputs.scan("staging.int_cohort_activity"), inputs.last_complete_month
    ).collect()


@mart(
    deps=[staging("int_survival_counts"), QUARANTINE],
    group_name="cohorts",
    preview=lambda frame: markdown_table(frame, limit=15),
)
def retention_curve(inputs: MartInputs) -> pl.DataFrame:
    """Kaplan-Meier survival by lifetime month, pooled over all cohorts, with a 95 % band."""
    return (
        survival.life_table(inputs.scan("staging.int_survival_counts").filter(pl.col("dimension") == "all"), ["basis"])
        .select("basis", "months_since_signup", "at_risk", "churned", "hazard", "survival", "survival_ci_low", "survival_ci_high")
        .sort("basis", "months_since_signup")
        .collect()
    )


@mart(deps=[marts("retention_curve")], group_name="cohorts", preview=_high_risk_preview)
def high_risk_months(inputs: MartInputs) -> pl.DataFrame:
    """Lifetime months whose churn hazard is significantly above what neighbouring months predict."""
    return high_risk.high_risk_months(
        inputs.read("marts.retention_curve"), inputs.settings.high_risk, inputs.settings.inactivity_days
    )


def _entering_preview(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_no customer is about to enter a high-risk lifetime month_"
    summary = frame.group_by("basis", "entering_month", "entering_lifetime_month").agg(
        pl.len().alias("customers"), pl.col("current_mrr").sum().alias("mrr_at_stake")
    )
    return markdown_table(summary.sort("basis", "entering_month"))


@mart(
    deps=[marts("high_risk_months"), staging("int_customers"), staging("int_observed_subscription_events")],
    group_name="cohorts",
    preview=_entering_preview,
)
def customers_entering_high_risk(inputs: MartInputs) -> pl.DataFrame:
    """Customers active now whose next one or two lifetime months are flagged high-risk: whom to
    look after before the risky month."""
    return high_risk.customers_entering_high_risk(
        inputs.tables.frame(high_risk.ENTERING_HIGH_RISK_SQL), inputs.last_complete_month
    )
