"""High-risk months: planted spikes are found where planted and nowhere else."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from churn_pipeline.lib.generate import GeneratorConfig, generate
from churn_pipeline.lib.high_risk import first_testable_month, high_risk_months
from churn_pipeline.lib.probability import holm_adjust
from churn_pipeline.lib.settings import PipelineSettings
from helpers import Built

DEFAULTS = PipelineSettings().high_risk


def _curve(hazards: list[float], start_at_risk: int, basis: str = "subscription", seed: int | None = None) -> pl.DataFrame:
    """A retention curve with the given hazards; exact counts, or binomial draws with a seed."""
    rng = np.random.default_rng(seed)
    rows, at_risk = [], start_at_risk
    for k, hazard in enumerate(hazards):
        churned = int(rng.binomial(at_risk, hazard)) if seed is not None else round(at_risk * hazard)
        rows.append({"basis": basis, "months_since_signup": k, "at_risk": at_risk, "churned": churned})
        at_risk = at_risk - churned - at_risk // 20  # some censoring each month
    return pl.DataFrame(rows)


def _flagged(frame: pl.DataFrame) -> list[int]:
    return frame.filter(pl.col("is_high_risk"))["months_since_signup"].to_list()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_smoothly_falling_hazard_flags_nothing(seed: int) -> None:
    hazards = [0.02 + 0.10 * math.exp(-0.25 * k) for k in range(24)]
    assert _flagged(high_risk_months(_curve(hazards, 20_000, seed=seed), DEFAULTS, 90)) == []


def test_steeply_halving_hazard_flags_nothing_even_at_month_zero() -> None:
    hazards = [0.2 * 0.5**k + 0.005 for k in range(12)]
    assert _flagged(high_risk_months(_curve(hazards, 50_000), DEFAULTS, 90)) == []


@pytest.mark.parametrize("spike_month, factor", [(5, 2.0), (5, 3.0), (2, 2.5), (9, 2.0)])
def test_planted_spike_is_flagged_there_only(spike_month: int, factor: float) -> None:
    hazards = [0.02 + 0.05 * math.exp(-0.1 * k) for k in range(18)]
    hazards[spike_month] *= factor
    frame = high_risk_months(_curve(hazards, 10_000, seed=spike_month), DEFAULTS, 90)
    assert _flagged(frame) == [spike_month]
    spike = frame.filter(pl.col("months_since_signup") == spike_month).row(0, named=True)
    assert spike["lift"] == pytest.approx(factor, rel=0.3)
    assert spike["p_value"] < 0.05


def test_thin_months_are_not_judged() -> None:
    hazards = [0.05] * 10
    curve = _curve(hazards, 40).with_columns(
        pl.when(pl.col("months_since_signup") == 6).then(pl.col("at_risk") // 2).otherwise(pl.col("churned")).alias("churned")
    )
    frame = high_risk_months(curve, PipelineSettings(high_risk_min_at_risk=30).high_risk, 90)
    assert _flagged(frame) == []
    assert frame.filter(pl.col("months_since_signup") == 6)["note"].item().startswith("too thin")


def test_orders_months_before_the_inactivity_window_elapses_are_not_tested() -> None:
    assert first_testable_month("subscription", 90) == 0
    assert first_testable_month("orders", 90) == 5  # 31 January + 90 days = 1 May: lifetime month 4
    assert first_testable_month("orders", 30) == 3  # 31 January + 30 days = 2 March: lifetime month 2
    # zero hazard until the window elapses, then a wave: nothing is flagged
    hazards = [0, 0, 0.15, 0.30, 0.12, 0.06, 0.05, 0.045, 0.04, 0.04, 0.035, 0.035]
    frame = high_risk_months(_curve(hazards, 20_000, basis="orders"), DEFAULTS, 90)
    assert _flagged(frame) == []
    assert frame.filter(pl.col("months_since_signup") < 5)["p_value"].null_count() == 5


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


@pytest.mark.parametrize("seed, spike_month", [(1, 5), (2, 5), (3, 3), (4, 8)])
def test_generator_spike_found_at_the_planted_month(tmp_path: Path, seed: int, spike_month: int) -> None:
    generate(tmp_path, GeneratorConfig(customers=6000, months=24, seed=seed, spike_month=spike_month, spike_factor=2.5))
    flagged = Built(tmp_path).high_risk_months()
    assert _flagged(flagged.filter(pl.col("basis") == "subscription")) == [spike_month]
    assert _flagged(flagged.filter(pl.col("basis") == "orders")) == []


@pytest.mark.parametrize("seed", [5, 6])
def test_generator_without_spike_flags_nothing(tmp_path: Path, seed: int) -> None:
    generate(tmp_path, GeneratorConfig(customers=6000, months=24, seed=seed, spike_month=None))
    assert _flagged(Built(tmp_path).high_risk_months()) == []


def test_documented_example() -> None:
    """The worked example in docs/high_risk_months.md."""
    curve = pl.DataFrame(
        {
            "basis": "subscription",
            "months_since_signup": list(range(10)),
            "at_risk": [10000, 9000, 8200, 7500, 6900, 6350, 5700, 5250, 4850, 4500],
            "churned": [1000, 720, 574, 450, 380, 762, 342, 289, 243, 216],
        }
    )
    frame = high_risk_months(curve, DEFAULTS, 90)
    assert _flagged(frame) == [5]
    month5 = frame.filter(pl.col("months_since_signup") == 5).row(0, named=True)
    # least-squares line through (3, .06), (4, .0551), (6, .06), (7, .055) weighted by at-risk, read at 5
    x = np.array([3, 4, 6, 7.0])
    y = np.array([450 / 7500, 380 / 6900, 342 / 5700, 289 / 5250])
    slope, intercept = np.polyfit(x, y, 1, w=np.sqrt([7500, 6900, 5700, 5250]))
    assert month5["baseline_hazard"] == pytest.approx(slope * 5 + intercept)
    assert month5["lift"] == pytest.approx(0.12 / (slope * 5 + intercept))
    month0 = frame.filter(pl.col("months_since_signup") == 0).row(0, named=True)
    assert month0["baseline_hazard"] == pytest.approx(2 * 0.08 - 0.07, abs=1e-3)


def test_a_handful_of_churns_after_quiet_months_is_not_judged() -> None:
    """Seen on Foodie-Fi: 2 churns among 45 customers after months without churn."""
    curve = pl.DataFrame(
        {
            "basis": "subscription",
            "months_since_signup": list(range(15)),
            "at_risk": [908, 892, 860, 818, 720, 638, 550, 475, 390, 339, 279, 223, 165, 100, 45],
            "churned": [16, 32, 28, 35, 29, 32, 12, 11, 2, 3, 0, 0, 0, 0, 2],
        }
    )
    frame = high_risk_months(curve, DEFAULTS, 90)
    assert _flagged(frame) == []
    assert frame.filter(pl.col("months_since_signup") == 14)["note"].item().startswith("too few churns")


def _planted_subscriptions(directory: Path, month_five_hazard: float) -> dict[str, set[str]]:
    """150 signups a month from 2023-07 to 2024-12 (as_of 2025-01-15), 3 % churning in every
    lifetime month but month five; returns the customer ids by what the test expects of them."""
    rows, expected = [], {"listed": set(), "upgraded": set()}
    month = date(2023, 7, 1)
    last_complete = date(2024, 12, 1)

    def add(customer: str, day: date, event_type: str, plan: str = "", price: str = "") -> None:
        rows.append(f"e{len(rows)},{customer},{day}T10:00:00Z,{event_type},{plan},{price},month,ads")

    def shift(start: date, k: int) -> date:
        index = start.year * 12 + start.month - 1 + k
        return date(index // 12, index % 12 + 1, start.day)

    while month <= last_complete:
        observed = (last_complete.year - month.year) * 12 + last_complete.month - month.month
        remaining = [f"c{month:%Y%m}_{i:03d}" for i in range(150)]
        for customer in remaining:
            add(customer, month.replace(day=5), "subscribed", "basic", "20")
        for k in range(observed + 1):
            hazard = month_five_hazard if k == 5 else 0.03
            churning, remaining = remaining[: round(len(remaining) * hazard)], remaining[round(len(remaining) * hazard) :]
            for customer in churning:
                add(customer, shift(month.replace(day=15), k), "cancelled")
        if observed in (3, 4):  # one or two months before month five
            late, upgraded, returned = remaining[0], remaining[1], remaining[2]
            add(late, date(2025, 1, 10), "cancelled")  # churned after the last complete month
            add(upgraded, date(2024, 12, 20), "plan_changed", "pro", "50")
            add(returned, date(2024, 11, 2), "cancelled")  # a second spell is not the one measured
            add(returned, date(2024, 12, 2), "reactivated", "basic", "20")
            expected["listed"] |= set(remaining) - {late, returned}
            expected["upgraded"].add(upgraded)
        month = shift(month, 1)
    add("c202501_000", date(2025, 1, 5), "subscribed", "basic", "20")  # signed up in the incomplete month
    header = "event_id,customer_id,occurred_at,event_type,plan,price,billing_period,channel\n"
    (directory / "subscription_events.csv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return expected


def test_customers_entering_a_month_five_spike_are_exactly_those_in_months_three_and_four(tmp_path: Path) -> None:
    expected = _planted_subscriptions(tmp_path, month_five_hazard=0.20)
    built = Built(tmp_path, as_of="2025-01-15T00:00:00Z")
    tables = built.published_tables()
    flagged = tables["high_risk_months"].filter(pl.col("is_high_risk"))
    assert flagged.select("basis", "months_since_signup").rows() == [("subscription", 5)]
    entering = tables["customers_entering_high_risk"]
    assert set(entering["customer_id"]) == expected["listed"] and entering.height == len(expected["listed"])
    by_cohort = entering.group_by("cohort_month", "current_lifetime_month", "entering_month").len().sort("cohort_month")
    assert by_cohort.select(pl.exclude("len")).rows() == [
        (date(2024, 8, 1), 4, date(2025, 1, 1)),
        (date(2024, 9, 1), 3, date(2025, 2, 1)),
    ]
    assert set(entering["entering_lifetime_month"]) == {5}
    month_five = flagged.row(0, named=True)
    assert entering["hazard"].unique().to_list() == [month_five["hazard"]]
    assert entering["lift"].unique().to_list() == [month_five["lift"]]
    upgraded = entering.filter(pl.col("customer_id").is_in(expected["upgraded"]))
    assert upgraded.select("plan", "current_mrr").unique().rows() == [("pro", 50.0)]
    others = entering.filter(~pl.col("customer_id").is_in(expected["upgraded"]))
    assert others.select("plan", "current_mrr", "channel", "segment").unique().rows() == [("basic", 20.0, "ads", "unknown")]
    # highest MRR first within each entering month
    assert entering.filter(pl.col("entering_month") == date(2025, 1, 1))["current_mrr"][0] == 50.0


def test_no_flagged_month_lists_no_customer(tmp_path: Path) -> None:
    _planted_subscriptions(tmp_path, month_five_hazard=0.03)
    tables = Built(tmp_path, as_of="2025-01-15T00:00:00Z").published_tables()
    assert tables["high_risk_months"].filter(pl.col("is_high_risk")).is_empty()
    entering = tables["customers_entering_high_risk"]
    assert entering.is_empty() and entering.columns[-1] == "as_of"
