"""High-risk months: planted spikes are found where planted and nowhere else."""

from __future__ import annotations

import math
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
