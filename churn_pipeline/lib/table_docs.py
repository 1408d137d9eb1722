"""What every published table and column means: the one source for the Dagster column
schemas, `docs/tables.md` (generated: `python -m churn_pipeline.lib.table_docs`) and the
report's captions. A test checks it against the Parquet files, so it cannot drift."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableDoc:
    name: str
    grain: str
    description: str
    columns: dict[str, str]
    parquet: bool = True


BASIS = {"basis": "`subscription` or `orders` (docs/definitions.md: the two bases)"}
EXPOSURE = {
    "customers_churned": "first churns of these customers in observed months",
    "customer_months": "their customer-months at risk (one per observed lifetime month up to and including the first churn)",
    "monthly_churn_rate": "customers_churned / customer_months: exposure-based monthly churn, unbiased by censoring",
}
GROUP_COMPARISON = {
    "retention_m1": "Kaplan-Meier survival within the group at lifetime month 1; null once everyone left is censored",
    "retention_m3": "the same at lifetime month 3",
    "retention_m6": "the same at lifetime month 6",
    "retention_m12": "the same at lifetime month 12",
    "rate_ratio_vs_others": "the group's monthly_churn_rate / that of all other groups of the basis pooled",
    "rate_ratio_ci_low": "95 % interval of the rate ratio, low end (log scale, Poisson counts)",
    "rate_ratio_ci_high": "95 % interval of the rate ratio, high end",
    "p_value_vs_others": "exact two-sided test that the group churns at the others' rate",
}
MOVEMENTS = {
    "customers_start": "customers in an active spell when the period starts",
    "customers_end": "customers in an active spell when the period ends",
    "new_customers": "first spells starting in the period (signups)",
    "reactivated": "later spells starting in the period (returning customers)",
    "churned": "spells ending in the period (a signup and a cancellation in one month count once in each)",
    "voluntary_churned": "churns by `cancelled` (subscription; null for orders)",
    "involuntary_churned": "churns by `expired`: failed payments, expired cards (subscription; null for orders)",
    "downgrade_churned": "moves to a cheaper plan counted as churn with --downgrade-is-churn (subscription; null for orders)",
    "customer_churn_rate": "churned / customers_start",
    "mrr_start": "MRR held when the period starts (subscription)",
    "mrr_end": "MRR held when the period ends (subscription)",
    "new_mrr": "MRR at `subscribed` of new customers",
    "expansion_mrr": "MRR increases at `plan_changed` / `price_changed`",
    "contraction_mrr": "MRR decreases at `plan_changed` / `price_changed`",
    "churned_mrr": "MRR held just before each churn",
    "reactivation_mrr": "MRR at reactivations",
    "gross_mrr_churn_rate": "(churned_mrr + contraction_mrr) / mrr_start",
    "net_mrr_churn_rate": "(churned_mrr + contraction_mrr - expansion_mrr - reactivation_mrr) / mrr_start; negative when existing customers grow",
    "trials_started": "`trial_started` events",
    "trials_converted": "first `subscribed` events of customers who had a trial",
    "revenue": "orders: net revenue of all loaded orders in the period (reporting currency)",
    "new_customer_revenue": "orders: revenue from customers whose signup month it is",
    "existing_customer_revenue": "orders: revenue from everyone else: tells whether a drop comes from new or existing customers",
    "benchmark_band": "`healthy` (<= 3 %), `acceptable while young` (<= 5 %), `typical, worth work` (<= 8 %), `high` (<= 15 %), `emergency` (> 15 %) monthly churn",
}

# the figures SaaS-metrics dashboards open with (subscription basis; null on the orders basis)
SAAS_METRICS = {
    "arr": "subscription: annual run rate, 12 x mrr_end",
    "arpa": "subscription: average MRR per account, mrr_end / customers_end; null with no customers",
    "quick_ratio": "subscription: (new_mrr + expansion_mrr + reactivation_mrr) / (contraction_mrr + churned_mrr); null when nothing was lost",
    "ltv": "subscription: lifetime value, arpa / customer_churn_rate (this month's); null at zero churn",
    "net_revenue_retention_12m": "subscription: MRR at the end of the month of the customers who held MRR 12 months earlier, over their MRR then (expansion counted); null until 12 months of history",
    "gross_revenue_retention_12m": "subscription: the same with each customer's MRR capped at its earlier value (no expansion); <= net_revenue_retention_12m",
}

# what churn_by_month counts within a month: churn_by_quarter sums these over the quarter
MONTHLY_FLOWS = (
    "new_customers", "reactivated", "churned", "voluntary_churned", "involuntary_churned", "downgrade_churned",
    "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "reactivation_mrr",
    "trials_started", "trials_converted", "revenue", "new_customer_revenue", "existing_customer_revenue",
)  # fmt: skip

TABLES: tuple[TableDoc, ...] = (
    TableDoc(
        "cohort_retention",
        "basis, signup cohort, observed lifetime month",
        "How many of each signup cohort are still active k months later, and how much revenue they hold.",
        {
            **BASIS,
            "cohort_month": "month of signup (first day, reporting time zone)",
            "months_since_signup": "lifetime month k: 0 in the signup month; only observed cells (cohort + k <= last complete month)",
            "cohort_size": "customers who signed up in cohort_month",
            "active_customers": "of them, active at the end of month cohort_month + k (reactivated customers count again)",
            "retention_rate": "active_customers / cohort_size",
            "revenue": "subscription: MRR held at the end of the month; orders: net order revenue in the month",
            "revenue_retention": "revenue / the cohort's month-0 revenue; null when that is 0",
        },
    ),
    TableDoc(
        "retention_curve",
        "basis, lifetime month",
        "Kaplan-Meier survival to first churn, pooled over all cohorts, with a 95 % band.",
        {
            **BASIS,
            "months_since_signup": "lifetime month k",
            "at_risk": "customers whose month k is observed and who had not first-churned before k",
            "churned": "those of them whose first churn is in month k",
            "hazard": "churned / at_risk",
            "survival": "product of (1 - hazard) over months 0..k",
            "survival_ci_low": "95 % band, low end (Greenwood, log(-log) scale)",
            "survival_ci_high": "95 % band, high end",
        },
    ),
    TableDoc(
        "high_risk_months",
        "basis, lifetime month with customers at risk",
        "Lifetime months whose churn hazard stands out from their neighbours (the month-five spike).",
        {
            **BASIS,
            "months_since_signup": "lifetime month k",
            "at_risk": "as in retention_curve",
            "churned": "as in retention_curve",
            "hazard": "as in retention_curve",
            "baseline_hazard": "the hazard the neighbouring months predict for this month",
            "lift": "hazard / baseline_hazard",
            "p_value": "one-sided p-value that the hazard exceeds the baseline, Holm-adjusted over the basis's tested months",
            "p_value_unadjusted": "the same before the adjustment",
            "is_high_risk": "at_risk >= min_at_risk, churned >= min_churned, lift >= min_lift and p_value < alpha",
            "note": "why a month was not tested (inactivity window, too thin, no neighbours)",
        },
    ),
    TableDoc(
        "customers_entering_high_risk",
        "basis, customer (one row per customer about to enter a flagged month)",
        "Customers still active whose next one or two lifetime months are flagged high-risk: whom to look after before the risky month. Empty when no month is flagged.",
        {
            **BASIS,
            "customer_id": "the customer, still in their first spell at as_of (the spell the hazard is measured on; a customer who churned after the last complete month is not listed)",
            "cohort_month": "month of signup",
            "channel": "acquisition channel, as in churn_by_channel",
            "segment": "customer type, as in churn_by_segment (`unknown` on the orders basis)",
            "plan": "subscription: plan held at as_of; null for orders",
            "current_mrr": "subscription: MRR held at as_of (reporting currency); null for orders",
            "current_lifetime_month": "lifetime month at the last complete month",
            "entering_lifetime_month": "the flagged lifetime month they reach next (current + 1 or + 2; the nearer when both are flagged)",
            "entering_month": "the calendar month in which they reach it",
            "hazard": "that month's hazard, as in high_risk_months",
            "lift": "that month's lift, as in high_risk_months",
        },
    ),
    TableDoc(
        "churn_by_cohort",
        "basis, signup cohort",
        "Each cohort's exposure-based monthly churn and its retention at 1, 3, 6 and 12 months.",
        {
            **BASIS,
            "cohort_month": "month of signup",
            "cohort_size": "customers who signed up in the cohort",
            **EXPOSURE,
            "retention_m1": "cohort_retention's retention_rate at lifetime month 1; null where not yet observed",
            "retention_m3": "the same at lifetime month 3",
            "retention_m6": "the same at lifetime month 6",
            "retention_m12": "the same at lifetime month 12",
        },
    ),
    TableDoc(
        "churn_by_channel",
        "basis, acquisition channel",
        "Churn by acquisition channel, each compared with all other channels.",
        {
            **BASIS,
            "channel": "acquisition channel of the first subscription or first order; `unknown` when blank",
            "customers": "customers acquired through the channel",
            **EXPOSURE,
            **GROUP_COMPARISON,
        },
    ),
    TableDoc(
        "churn_by_segment",
        "basis, dimension, value",
        "Churn by customer type or industry (`segment`), signup plan and value tier at signup.",
        {
            **BASIS,
            "dimension": "`segment`, `signup_plan` or `value_tier` (quartile of value at signup)",
            "value": "the group within the dimension; `unknown` when missing",
            "customers": "customers in the group",
            **EXPOSURE,
            **GROUP_COMPARISON,
        },
    ),
    TableDoc(
        "churn_by_price_change",
        "detected price change (subscription)",
        "Churn before and after each price change, against customers the change did not touch.",
        {
            "plan": "the plan whose price changed",
            "change_month": "month of the change",
            "change_kind": "`existing_customers` (repriced by `price_changed`) or `new_signups` (new signup price)",
            "old_price": "MRR before (most common value)",
            "new_price": "MRR after (most common value)",
            "price_change_pct": "new_price / old_price - 1",
            "customers_affected": "repriced customers, or signups at the new price in the window after",
            "window_months": "months compared on each side (--price-change-window)",
            "churn_rate_before": "monthly churn of the affected customers before",
            "churn_rate_after": "monthly churn of the affected customers after",
            "lift": "churn_rate_after / churn_rate_before",
            "unaffected_churn_rate_before": "monthly churn of customers on other plans, same months before",
            "unaffected_churn_rate_after": "the same after",
            "unaffected_lift": "their after / before",
            "relative_lift": "lift / unaffected_lift: the change's effect net of what happened to everyone",
            "p_value": "two-sided test of relative_lift = 1",
            "p_value_after_vs_before": "exact test of the affected customers' own before/after change",
            "churned_affected_before": "churns behind churn_rate_before",
            "customer_months_affected_before": "customer-months behind churn_rate_before",
            "churned_affected_after": "churns behind churn_rate_after",
            "customer_months_affected_after": "customer-months behind churn_rate_after",
            "churned_unaffected_before": "churns behind unaffected_churn_rate_before",
            "customer_months_unaffected_before": "customer-months behind unaffected_churn_rate_before",
            "churned_unaffected_after": "churns behind unaffected_churn_rate_after",
            "customer_months_unaffected_after": "customer-months behind unaffected_churn_rate_after",
        },
    ),
    TableDoc(
        "churn_by_month",
        "basis, complete calendar month",
        "Monthly customer movements, the MRR bridge, churn rates graded against SaaS benchmarks, and their trend.",
        {
            **BASIS,
            "month": "calendar month (first day, reporting time zone)",
            **{
                k: MOVEMENTS[k]
                for k in (
                    "customers_start",
                    "new_customers",
                    "reactivated",
                    "churned",
                    "voluntary_churned",
                    "involuntary_churned",
                    "downgrade_churned",
                    "customers_end",
                    "customer_churn_rate",
                    "benchmark_band",
                )
            },
            "trend_3m": "`rising`, `falling` or `flat` churn over the last 3 months including this one (Cochran-Armitage at 5 %)",
            "trend_3m_p_value": "that test's two-sided p-value",
            "trend_6m": "the same over the last 6 months",
            "trend_6m_p_value": "that test's two-sided p-value",
            **{
                k: MOVEMENTS[k]
                for k in (
                    "mrr_start",
                    "new_mrr",
                    "expansion_mrr",
                    "contraction_mrr",
                    "churned_mrr",
                    "reactivation_mrr",
                    "mrr_end",
                    "gross_mrr_churn_rate",
                    "net_mrr_churn_rate",
                    "trials_started",
                    "trials_converted",
                    "revenue",
                    "new_customer_revenue",
                    "existing_customer_revenue",
                )
            },
            **SAAS_METRICS,
        },
    ),
    TableDoc(
        "churn_by_quarter",
        "basis, complete calendar quarter",
        "churn_by_month over complete quarters: flows summed, stocks from the first and last month, rates recomputed.",
        {
            **BASIS,
            "quarter": "calendar quarter (its first day)",
            **{
                k: MOVEMENTS[k]
                for k in ("customers_start", "customers_end", "mrr_start", "mrr_end", *MONTHLY_FLOWS)
                + ("customer_churn_rate", "gross_mrr_churn_rate", "net_mrr_churn_rate")
            },
            "monthly_equivalent_churn_rate": "1 - (1 - customer_churn_rate)^(1/3): the quarter's churn per month",
            "benchmark_band": "monthly_equivalent_churn_rate graded as in churn_by_month",
        },
    ),
    TableDoc(
        "churn_reactivation",
        "basis, dimension (cohort or channel), value",
        '"Satisfied" churn: how many churned customers come back, and how soon.',
        {
            **BASIS,
            "dimension": "`all`, `cohort` or `channel`",
            "value": "the group (cohort month or channel)",
            "churns": "churns observed in the group",
            "returned_ever": "of them, followed by a new spell before as_of",
            "churns_observed_30d": "churns at least 30 days before as_of (a 30-day return could have been seen)",
            "returned_30d": "of them, back within 30 days",
            "returned_within_30d_share": "returned_30d / churns_observed_30d",
            "churns_observed_60d": "churns at least 60 days before as_of",
            "returned_60d": "of them, back within 60 days",
            "returned_within_60d_share": "returned_60d / churns_observed_60d",
            "churns_observed_90d": "churns at least 90 days before as_of",
            "returned_90d": "of them, back within 90 days",
            "returned_within_90d_share": "returned_90d / churns_observed_90d",
            "median_days_to_return": "median days from churn to return, among returns",
            "mean_days_to_return": "mean days from churn to return, among returns",
        },
    ),
    TableDoc(
        "quarantine",
        "raw row that was not loaded",
        "Every raw row that was not loaded, with where it came from and why (docs/ingestion.md lists every reason).",
        {
            "source": "`orders`, `subscription_events` or `fx_rates`",
            "source_file": "file path below the raw directory",
            "source_row": "position among the file's data records (header excluded)",
            "reason": "why it was not loaded",
            "raw_values": "JSON of the row's raw text",
        },
    ),
)
# every published table ends with the run's as_of (defs/marts.py adds it; the quarantine's SQL selects it)
AS_OF = 'the instant the data is observed to (UTC; the same on every row): a dashboard\'s "data as of"'
TABLES = tuple(TableDoc(t.name, t.grain, t.description, {**t.columns, "as_of": AS_OF}, t.parquet) for t in TABLES)
TABLES_BY_NAME = {table.name: table for table in TABLES}


def markdown() -> str:
    """docs/tables.md, with each column's type as dbt_like_sql/schema.yml records it."""
    from churn_pipeline.lib.schemas import load_schemas

    types = {table: {column.name: column.data_type for column in columns} for table, columns in load_schemas().items()}
    lines = [
        "# Published tables and columns",
        "",
        "Generated from `churn_pipeline/lib/table_docs.py` (`python -m churn_pipeline.lib.table_docs > docs/tables.md`);",
        "a test checks it against that file and the Parquet schemas. Every table is in the warehouse's",
        "`marts` schema and, unless noted, in `<output_dir>/<table>.parquet`. The reasoning behind each",
        "definition is in [definitions.md](definitions.md). Types are DuckDB's; the Parquet files hold",
        "the same ones as Arrow types (BIGINT int64, INTEGER int32, DOUBLE double, DATE date32, VARCHAR",
        "string, BOOLEAN bool, TIMESTAMP WITH TIME ZONE a UTC timestamp in microseconds).",
        "",
    ]
    for table in TABLES:
        where = "`marts." + table.name + "`" + (f", `{table.name}.parquet`" if table.parquet else " (warehouse only)")
        lines += [
            f"## {table.name}",
            "",
            f"{table.description} One row per {table.grain}. In {where}.",
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{column}` | {types[f'marts.{table.name}'][column]} | {meaning.replace('|', '&#124;')} |"
            for column, meaning in table.columns.items()
        ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
