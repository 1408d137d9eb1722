"""Blocking asset checks: a wrong number never reaches the tables downstream of a failure."""

import dagster as dg

from churn_pipeline.defs.asset_keys import QUARANTINE, marts
from churn_pipeline.defs.resources import WAREHOUSE_POOL, Warehouse
from churn_pipeline.lib.quality import LOADED_TABLES, file_reconciliation, reconciliation


def failing_rows(warehouse: Warehouse, sql: str, columns: list[str], what: str) -> dg.AssetCheckResult:
    """The check passes when `sql` returns no row; otherwise it reports how many and the first."""
    with warehouse.tables() as tables:
        return _result(tables.frame(sql).rows(), columns, what)


def _result(failures: list[tuple], columns: list[str], what: str) -> dg.AssetCheckResult:
    sample = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in failures[:10])
    table = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n{sample}" if failures else "none"
    first = ", ".join(f"{column}={value}" for column, value in zip(columns, failures[0], strict=True)) if failures else ""
    return dg.AssetCheckResult(
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(failures)} {what}; first: {first}" if failures else None,
        metadata={"failures": len(failures), "failing_rows": dg.MetadataValue.md(table)},
    )


@dg.asset_check(
    pool=WAREHOUSE_POOL,
    asset=QUARANTINE,
    blocking=True,
    additional_deps=[dg.AssetKey(["staging", t.split(".")[1]]) for t in LOADED_TABLES.values()],
)
def raw_rows_reconcile(warehouse: Warehouse) -> dg.AssetCheckResult:
    """For every source, raw rows (from the load manifest) = loaded rows + quarantined rows; for
    every file in the manifest, rows read = rows staged + unreadable rows."""
    with warehouse.tables() as tables:
        counts = reconciliation(tables).rows()
        files = file_reconciliation(tables).rows()
    failures = [(source, "(every file)", raw, loaded, q) for source, raw, loaded, q in counts if raw != loaded + q]
    failures += [row for row in files if row[2] != row[3] + row[4]]
    result = _result(
        failures,
        ["source", "file", "raw rows or rows read", "loaded or staged", "quarantined or unreadable"],
        "sources or files do not reconcile",
    )
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata={
            **result.metadata,
            **{f"{source}: raw / loaded / quarantined": f"{raw} / {loaded} / {q}" for source, raw, loaded, q in counts},
            "files reconciled": len(files),
        },
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("cohort_retention"), blocking=True)
def retention_rates_within_unit_interval(warehouse: Warehouse) -> dg.AssetCheckResult:
    """retention_rate is between 0 and 1 and active customers never exceed the cohort."""
    return failing_rows(
        warehouse,
        """
        select basis, cohort_month, months_since_signup, retention_rate
        from marts.cohort_retention
        where retention_rate is null or retention_rate < 0 or retention_rate > 1
            or active_customers > cohort_size
        order by all
        """,
        ["basis", "cohort_month", "k", "retention_rate"],
        "cells outside [0, 1]",
    )


@dg.asset_check(
    pool=WAREHOUSE_POOL,
    asset=marts("cohort_retention"),
    blocking=True,
    additional_deps=[dg.AssetKey(["staging", "int_customers"])],
)
def cohort_sizes_sum_to_customers(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Cohort sizes add up to the customers who signed up by the last complete month."""
    return failing_rows(
        warehouse,
        """
        with published as (
            select basis, sum(cohort_size) as customers
            from (select distinct basis, cohort_month, cohort_size from marts.cohort_retention)
            group by basis
        ),
        expected as (
            select basis, count(*) as customers
            from staging.int_customers, staging.int_observation_window as w
            where cohort_month <= w.last_complete_month
            group by basis
        )
        select basis, coalesce(published.customers, 0) as published, coalesce(expected.customers, 0) as expected
        from published full join expected using (basis)
        where coalesce(published.customers, 0) <> coalesce(expected.customers, 0)
        """,
        ["basis", "published", "expected"],
        "bases whose cohort sizes do not add up",
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("cohort_retention"), blocking=True)
def no_cell_beyond_last_complete_month(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every published cell is observed: cohort month + lifetime month <= last complete month."""
    return failing_rows(
        warehouse,
        """
        select basis, cohort_month, months_since_signup
        from marts.cohort_retention, staging.int_observation_window as w
        where cohort_month + to_months(months_since_signup) > w.last_complete_month
        order by all
        """,
        ["basis", "cohort_month", "k"],
        "cells beyond the last complete month",
    )


def _curve_rises(warehouse: Warehouse, column: str, tolerance: float, also_failing: str, what: str) -> dg.AssetCheckResult:
    """The ages of marts.retention_curve where `column` is above its value one month younger
    (by more than `tolerance`) or where `also_failing` holds."""
    return failing_rows(
        warehouse,
        f"""
        select basis, months_since_signup, {column}, previous
        from (
            select *, lag({column}) over (partition by basis order by months_since_signup) as previous
            from marts.retention_curve
        )
        where {column} > previous + {tolerance} or {also_failing}
        order by all
        """,
        ["basis", "k", column, "previous"],
        what,
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("retention_curve"), blocking=True)
def survival_never_increases(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Kaplan-Meier survival is non-increasing with age and inside its confidence band."""
    return _curve_rises(
        warehouse,
        "survival",
        1e-12,
        "survival < 0 or survival > 1 or survival_ci_low > survival + 1e-12 or survival_ci_high < survival - 1e-12",
        "months where survival rises or leaves its band",
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("retention_curve"), blocking=True)
def at_risk_never_increases(warehouse: Warehouse) -> dg.AssetCheckResult:
    """The number of customers at risk never grows with age, and churned <= at_risk."""
    return _curve_rises(warehouse, "at_risk", 0, "churned > at_risk or churned < 0", "months where at_risk grows")


asset_checks = [
    raw_rows_reconcile,
    retention_rates_within_unit_interval,
    cohort_sizes_sum_to_customers,
    no_cell_beyond_last_complete_month,
    survival_never_increases,
    at_risk_never_increases,
]


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("churn_by_month"), blocking=True)
def customer_identity_holds(warehouse: Warehouse) -> dg.AssetCheckResult:
    """customers_end = customers_start + new_customers + reactivated - churned, every month."""
    return failing_rows(
        warehouse,
        """
        select basis, month, customers_start, new_customers, reactivated, churned, customers_end
        from marts.churn_by_month
        where customers_end <> customers_start + new_customers + reactivated - churned
        order by all
        """,
        ["basis", "month", "start", "new", "reactivated", "churned", "end"],
        "months break the customer identity",
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("churn_by_month"), blocking=True)
def mrr_identity_holds(warehouse: Warehouse) -> dg.AssetCheckResult:
    """mrr_end = mrr_start + new + expansion + reactivation - contraction - churned (to a cent)."""
    return failing_rows(
        warehouse,
        """
        select month, mrr_start, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, churned_mrr, mrr_end
        from marts.churn_by_month
        where basis = 'subscription'
            and abs(mrr_end - (mrr_start + new_mrr + expansion_mrr + reactivation_mrr - contraction_mrr - churned_mrr)) > 0.005
        order by all
        """,
        ["month", "start", "new", "expansion", "reactivation", "contraction", "churned", "end"],
        "months break the MRR identity",
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("churn_by_month"), blocking=True)
def months_chain(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Each month starts where the previous one ended (customers and MRR), and no month is past the last complete one."""
    return failing_rows(
        warehouse,
        """
        select basis, month, customers_start, previous_end
        from (
            select *,
                lag(customers_end) over (partition by basis order by month) as previous_end,
                lag(mrr_end) over (partition by basis order by month) as previous_mrr_end
            from marts.churn_by_month
        ), staging.int_observation_window as w
        where customers_start <> previous_end
            or abs(coalesce(mrr_start, 0) - coalesce(previous_mrr_end, mrr_start, 0)) > 0.005
            or month > w.last_complete_month
        order by all
        """,
        ["basis", "month", "customers_start", "previous_end"],
        "months that do not chain",
    )


@dg.asset_check(pool=WAREHOUSE_POOL, asset=marts("churn_by_cohort"), blocking=True, additional_deps=[marts("retention_curve")])
def customer_months_match_the_curve(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Per basis, churn_by_cohort's customer-months and churns add up to retention_curve's at_risk and churned."""
    return failing_rows(
        warehouse,
        """
        with cohorts as (
            select basis, sum(customer_months) as months, sum(customers_churned) as churned
            from marts.churn_by_cohort group by basis
        ),
        curve as (
            select basis, sum(at_risk) as months, sum(churned) as churned from marts.retention_curve group by basis
        )
        select basis, cohorts.months as cohort_months, curve.months as curve_months,
            cohorts.churned as cohort_churns, curve.churned as curve_churns
        from cohorts full join curve using (basis)
        where cohorts.months is distinct from curve.months or cohorts.churned is distinct from curve.churned
        """,
        ["basis", "cohort months", "curve months", "cohort churns", "curve churns"],
        "bases that do not add up",
    )


asset_checks += [customer_identity_holds, mrr_identity_holds, months_chain, customer_months_match_the_curve]
