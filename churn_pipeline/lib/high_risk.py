"""High-risk lifetime months: a hazard well above what the neighbouring months predict.

For each lifetime month k of a basis's retention curve:
1. baseline_hazard = an at-risk-weighted straight line fitted to the hazards of the months
   k-w..k+w (k itself left out) and read at k; it cannot fall below half a churn over the
   neighbours' at-risk total, so a zero baseline never makes the lift infinite;
2. lift = hazard / baseline_hazard;
3. p_value: one-sided exact binomial test of churned(k) against at_risk(k) x baseline,
   Holm-Bonferroni adjusted over every month tested for the basis;
4. is_high_risk = at_risk >= min_at_risk and lift >= min_lift and p_value < alpha.
A straight line over both sides means a smoothly falling (or rising) curve predicts itself.
For the orders basis, churn cannot happen before `inactivity_days` have passed; those months
and the months in which the window first elapses are neither tested nor used as neighbours.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
from scipy.stats import binom

from churn_pipeline.lib.settings import HighRiskSettings
from churn_pipeline.lib.survival import holm_adjust


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


def _baseline(k: int, months: np.ndarray, hazard: np.ndarray, at_risk: np.ndarray, eligible: np.ndarray, w: int) -> float | None:
    near = eligible & (np.abs(months - k) <= w) & (months != k)
    if not near.any():
        return None
    x, y, weight = months[near], hazard[near], at_risk[near].astype(float)
    if near.sum() >= 2 and len(np.unique(x)) >= 2:
        slope, intercept = np.polyfit(x, y, 1, w=np.sqrt(weight))
        predicted = slope * k + intercept
    else:
        predicted = float(np.average(y, weights=weight))
    floor = 0.5 / weight.sum()
    return float(max(predicted, floor))


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
        baseline = np.full(len(months), np.nan)
        p_raw = np.full(len(months), np.nan)
        notes: list[str | None] = [None] * len(months)
        for i, k in enumerate(months):
            if not eligible[i]:
                notes[i] = f"churn not fully possible before lifetime month {first} (inactivity window)"
                continue
            value = _baseline(k, months, hazard, at_risk, eligible, settings.neighbours)
            if value is None:
                notes[i] = "no neighbouring months to compare with"
                continue
            baseline[i] = value
            if at_risk[i] < settings.min_at_risk:
                notes[i] = f"too thin to judge (at_risk < {settings.min_at_risk})"
                continue
            p_raw[i] = binom.sf(churned[i] - 1, at_risk[i], value)
        tested = ~np.isnan(p_raw)
        p_adjusted = np.full(len(months), np.nan)
        if tested.any():
            p_adjusted[tested] = holm_adjust(list(p_raw[tested]))
        lift = hazard / baseline
        flagged = tested & (lift >= settings.min_lift) & (p_adjusted < settings.alpha)
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
                "basis": pl.String, "months_since_signup": pl.Int32, "at_risk": pl.Int64, "churned": pl.Int64,
                "hazard": pl.Float64, "baseline_hazard": pl.Float64, "lift": pl.Float64, "p_value": pl.Float64,
                "p_value_unadjusted": pl.Float64, "is_high_risk": pl.Boolean, "note": pl.String,
            }
        )
    return pl.concat(frames)
