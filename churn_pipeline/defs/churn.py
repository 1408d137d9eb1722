"""Churn tables (contract section 4): by cohort, channel, segment, price change, month and quarter."""

import polars as pl

from churn_pipeline.defs.asset_keys import QUARANTINE, marts, staging
from churn_pipeline.defs.marts import MartInputs, mart
from churn_pipeline.defs.metadata import markdown_table
from churn_pipeline.lib import churn_tables
from churn_pipeline.lib.price_changes import churn_by_price_change as price_change_table

COUNTS = [staging("int_survival_counts"), QUARANTINE]


def _columns(*columns: str, rows: int = 12):
    return lambda frame: markdown_table(frame.select(*columns), rows)


@mart(deps=[*COUNTS, marts("cohort_retention")], group_name="churn", preview=lambda frame: markdown_table(frame.tail(12)))
def churn_by_cohort(inputs: MartInputs) -> pl.DataFrame:
    """Monthly churn rate per signup cohort (churns / customer-months at risk) and retention at 1/3/6/12 months."""
    return churn_tables.churn_by_cohort(inputs.scan("staging.int_survival_counts"), inputs.scan("marts.cohort_retention"))


@mart(
    deps=COUNTS,
    group_name="churn",
    preview=_columns(
        "basis",
        "channel",
        "customers",
        "monthly_churn_rate",
        "rate_ratio_vs_others",
        "rate_ratio_ci_low",
        "rate_ratio_ci_high",
        "p_value_vs_others",
    ),
)
def churn_by_channel(inputs: MartInputs) -> pl.DataFrame:
    """Churn per acquisition channel, each compared with all other channels (rate ratio, 95 % CI, p-value)."""
    return churn_tables.churn_by_channel(inputs.scan("staging.int_survival_counts"))


@mart(
    deps=COUNTS,
    group_name="churn",
    preview=_columns("basis", "dimension", "value", "customers", "monthly_churn_rate", "rate_ratio_vs_others", rows=20),
)
def churn_by_segment(inputs: MartInputs) -> pl.DataFrame:
    """churn_by_channel's metrics by segment, plan at signup and value tier (`dimension` names the grouping)."""
    return churn_tables.churn_by_segment(inputs.scan("staging.int_survival_counts"))


@mart(
    deps=[staging("int_signup_counts"), staging("int_price_change_exposure"), QUARANTINE],
    group_name="churn",
    preview=_columns(
        "plan",
        "change_month",
        "change_kind",
        "old_price",
        "new_price",
        "churn_rate_before",
        "churn_rate_after",
        "lift",
        "relative_lift",
        "p_value",
    ),
)
def churn_by_price_change(inputs: MartInputs) -> pl.DataFrame:
    """Churn before vs after each price change (existing customers repriced, or a new signup price), against unaffected customers."""
    return price_change_table(
        inputs.scan("staging.int_price_change_exposure"),
        inputs.scan("staging.int_signup_counts"),
        inputs.settings.price_change_window_months,
    )


@mart(
    deps=[staging("int_monthly_movements"), staging("int_revenue_retention"), QUARANTINE],
    group_name="churn",
    preview=lambda frame: markdown_table(
        frame.tail(12).select(
            "basis",
            "month",
            "customers_start",
            "churned",
            "customer_churn_rate",
            "benchmark_band",
            "trend_3m",
            "net_mrr_churn_rate",
        )
    ),
)
def churn_by_month(inputs: MartInputs) -> pl.DataFrame:
    """Calendar-month customer movements and MRR bridge, churn rates with benchmark band and 3/6-month trend,
    and the SaaS metrics: ARR, ARPA, Quick Ratio, LTV, 12-month net and gross revenue retention."""
    return churn_tables.churn_by_month(inputs.read("staging.int_monthly_movements"), inputs.read("staging.int_revenue_retention"))


@mart(
    deps=[marts("churn_by_month")],
    group_name="churn",
    preview=_columns(
        "basis", "quarter", "customers_start", "churned", "customer_churn_rate", "monthly_equivalent_churn_rate", "benchmark_band"
    ),
)
def churn_by_quarter(inputs: MartInputs) -> pl.DataFrame:
    """churn_by_month rolled up to complete calendar quarters."""
    return churn_tables.churn_by_quarter(inputs.read("marts.churn_by_month"))


@mart(
    deps=[staging("int_reactivation_counts"), QUARANTINE],
    group_name="churn",
    preview=lambda frame: markdown_table(frame.filter(pl.col("dimension") != "cohort"), 20),
)
def churn_reactivation(inputs: MartInputs) -> pl.DataFrame:
    """ "Satisfied" churn: share of churned customers back within 30/60/90 days, and the time to return."""
    return churn_tables.churn_reactivation(inputs.read("staging.int_reactivation_counts"))
