"""High-risk lifetime months: a hazard well above what the neighbouring months predict.

For each lifetime month k of a basis's retention curve:
1. baseline_hazard: a straight line fitted (weighted by at-risk counts) to the hazards of
   months k-w..k+w, k itself left out, read at k. A straight line over both sides means a
   smoothly falling or rising curve predicts itself, also at the edges;
2. lift = hazard / baseline_hazard;
3. p_value: one-sided test that the hazard exceeds the baseline, with the variance of both
   the month's own hazard (binomial, at its at-risk count) and of the baseline prediction
   (the fit's prediction variance, large where neighbours are thin or extrapolated), so
   a few churns in a thin tail month do not count as evidence; Holm-Bonferroni adjusted
   over every month tested for the basis;
4. is_high_risk = at_risk >= min_at_risk, churned >= min_churned, lift >= min_lift and
   p_value < alpha.
Months flagged are then left out of their neighbours' baselines and the test is repeated
until the flags settle, so one spike does not distort the months around it.
For the orders basis, churn cannot happen before `inactivity_days` have passed; those months
and the months in which the window first elapses are neither tested nor used as neighbours.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl

from churn_pipeline.lib.probability import holm_adjust, normal_sf
from churn_pipeline.lib.settings import HighRiskSettings


def first_testable_month(basis: str, inactivity_days: int) -> int:
    """Lifetime months before this one hold no churn, or only part of the first possible wave."""
    if basis != "orders":
        return 0
    # the latest lifetime month in which a month-0 signup can first churn, over every signup day
    days = [date(2023, 1, 1) + timedelta(days=i) for i in range(731)]
    return 1 + max(
        (later.year - day.year) * 12 + later.month - day.month
        for day in days
        for later in [day + timedelta(days=inactivity_days)]
    )


def _baseline(
    k: int, months: np.ndarray, hazard: np.ndarray, at_risk: np.ndarray, usable: np.ndarray, w: int
) -> tuple[float, float] | None:
    """Predicted hazard at month k from its neighbours, and the variance of that prediction."""
    near = usable & (np.abs(months - k) <= w) & (months != k)
    if not near.any():
        return None
    x, y, n = months[near].astype(float), hazard[near], at_risk[near].astype(float)
    pooled = float(np.sum(y * n) / n.sum())
    spread = max(pooled * (1 - pooled), 0.25 / n.sum())
    weight = n / spread
    if len(np.unique(x)) >= 2:
        design = np.column_stack([np.ones_like(x), x])
        covariance = np.linalg.inv(design.T @ (design * weight[:, None]))
        coefficients = covariance @ (design.T @ (weight * y))
        point = np.array([1.0, float(k)])
        predicted, variance = float(point @ coefficients), float(point @ covariance @ point)
    else:
        predicted, variance = pooled, spread / n.sum()
    return max(predicted, 0.5 / n.sum()), variance


def _test_months(months, at_risk, churned, hazard, usable, eligible, first, settings: HighRiskSettings):
    baseline = np.full(len(months), np.nan)
    p_raw = np.full(len(months), np.nan)
    notes: list[str | None] = [None] * len(months)
    for i, k in enumerate(months):
        if not eligible[i]:
            notes[i] = f"churn not fully possible before lifetime month {first} (inactivity window)"
            continue
        fitted = _baseline(k, months, hazard, at_risk, usable, settings.neighbours)
        if fitted is None:
            notes[i] = "no neighbouring months to compare with"
            continue
        baseline[i], prediction_variance = fitted
        if at_risk[i] < settings.min_at_risk:
            notes[i] = f"too thin to judge (at_risk < {settings.min_at_risk})"
            continue
        if churned[i] < settings.min_churned:
            notes[i] = f"too few churns to judge (churned < {settings.min_churned})"
            continue
        standard_error = math.sqrt(baseline[i] * (1 - baseline[i]) / at_risk[i] + prediction_variance)
        p_raw[i] = float(normal_sf((hazard[i] - baseline[i]) / standard_error))
    return baseline, p_raw, notes


def _holm(p_raw: np.ndarray) -> np.ndarray:
    adjusted = np.full(len(p_raw), np.nan)
    tested = ~np.isnan(p_raw)
    if tested.any():
        adjusted[tested] = holm_adjust(list(p_raw[tested]))
    return adjusted


def _flags(hazard: np.ndarray, baseline: np.ndarray, p_raw: np.ndarray, settings: HighRiskSettings) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = hazard / baseline
    return ~np.isnan(p_raw) & (lift >= settings.min_lift) & (_holm(p_raw) < settings.alpha)


def high_risk_months(curve: pl.DataFrame, settings: HighRiskSettings, inactivity_days: int) -> pl.DataFrame:
    """The contract's high_risk_months from a retention_curve frame (one row per basis and month)."""
    frames = []
    for (basis,), part in curve.sort("basis", "months_since_signup").group_by(["basis"], maintain_order=True):
        months = part["months_since_signup"].to_numpy().astype(int)
        at_risk = part["at_risk"].to_numpy().astype(int)
        churned = part["churned"].to_numpy().astype(int)
        hazard = churned / at_risk
        first = first_testable_month(basis, inactivity_days)
        eligible = months >= first
        flagged_before = np.zeros(len(months), dtype=bool)
        for _ in range(5):
            baseline, p_raw, notes = _test_months(
                months, at_risk, churned, hazard, eligible & ~flagged_before, eligible, first, settings
            )
            flagged = _flags(hazard, baseline, p_raw, settings)
            if (flagged == flagged_before).all():
                break
            flagged_before = flagged
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = hazard / baseline
        p_adjusted = _holm(p_raw)
        frames.append(
            pl.DataFrame(
                {
                    "basis": basis,
                    "months_since_signup": months.astype(np.int32),
                    "at_risk": at_risk.astype(np.int64),
                    "churned": churned.astype(np.int64),
                    "hazard": hazard,
                    "baseline_hazard": baseline,
                    "lift": lift,
                    "p_value": p_adjusted,
                    "p_value_unadjusted": p_raw,
                    "is_high_risk": flagged,
                    "note": notes,
                },
                schema_overrides={"note": pl.String},
            ).with_columns(pl.col("baseline_hazard", "lift", "p_value", "p_value_unadjusted").fill_nan(None))
        )
    if not frames:
        return pl.DataFrame(
            schema={
                "basis": pl.String,
                "months_since_signup": pl.Int32,
                "at_risk": pl.Int64,
                "churned": pl.Int64,
                "hazard": pl.Float64,
                "baseline_hazard": pl.Float64,
                "lift": pl.Float64,
                "p_value": pl.Float64,
                "p_value_unadjusted": pl.Float64,
                "is_high_risk": pl.Boolean,
                "note": pl.String,
            }
        )
    return pl.concat(frames)


# Customers still in their first spell at as_of (the spell the hazard is measured on) whose next
# one or two lifetime months are flagged; the engine does the join, only the listed rows return.
ENTERING_HIGH_RISK_SQL = """
with flagged as (
    select basis, months_since_signup, hazard, lift
    from marts.high_risk_months
    where is_high_risk
),

open_customers as (
    select basis, customer_id, cohort_month, channel, segment, last_observed_lifetime_month
    from staging.int_customers
    where first_churn_at is null and last_observed_lifetime_month >= 0
),

entering as (
    select
        customers.*,
        flagged.months_since_signup as entering_lifetime_month,
        flagged.hazard,
        flagged.lift,
        row_number() over (
            partition by customers.basis, customers.customer_id order by flagged.months_since_signup
        ) as entry_rank
    from open_customers as customers
    inner join flagged
        on
            flagged.basis = customers.basis
            and flagged.months_since_signup > customers.last_observed_lifetime_month
            and flagged.months_since_signup <= customers.last_observed_lifetime_month + 2
),

latest_states as (
    select
        customer_id,
        plan_after,
        mrr_after,
        row_number() over (partition by customer_id order by event_seq desc) as recency
    from staging.int_observed_subscription_events
    where customer_id in (select entering.customer_id from entering where entering.basis = 'subscription')
)

select
    entering.basis,
    entering.customer_id,
    entering.cohort_month,
    entering.channel,
    entering.segment,
    latest_states.plan_after as plan,
    latest_states.mrr_after as current_mrr,
    entering.last_observed_lifetime_month as current_lifetime_month,
    entering.entering_lifetime_month,
    entering.hazard,
    entering.lift
from entering
left join latest_states
    on entering.basis = 'subscription' and latest_states.customer_id = entering.customer_id and latest_states.recency = 1
where entering.entry_rank = 1
"""


def customers_entering_high_risk(rows: pl.DataFrame, last_complete_month: date) -> pl.DataFrame:
    """The listed customers (rows of ENTERING_HIGH_RISK_SQL) with the calendar month they enter
    the flagged lifetime month, the highest MRR first within each month."""
    months_ahead = pl.col("entering_lifetime_month") - pl.col("current_lifetime_month")
    return (
        rows.with_columns(
            pl.lit(last_complete_month).dt.offset_by(pl.format("{}mo", months_ahead)).alias("entering_month"),
            pl.col("current_lifetime_month", "entering_lifetime_month").cast(pl.Int32),
        )
        .select(
            "basis",
            "customer_id",
            "cohort_month",
            "channel",
            "segment",
            "plan",
            "current_mrr",
            "current_lifetime_month",
            "entering_lifetime_month",
            "entering_month",
            "hazard",
            "lift",
        )
        .sort("basis", "entering_month", pl.col("current_mrr").neg(), "customer_id", nulls_last=True)
    )
