"""The few distribution tails the churn tables need, from scipy.special (importing
scipy.stats costs over a second on every run for the same numbers)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import bdtr, bdtrc, ndtr


def normal_sf(z):
    """P(Z > z) for a standard normal Z."""
    return ndtr(-np.asarray(z, dtype=float))


def binom_cdf(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p); 0 below 0 and 1 from n on, like scipy.stats.binom.cdf."""
    k, n = np.floor(np.asarray(k, dtype=float)), np.asarray(n, dtype=np.int64)
    inside = bdtr(np.clip(k, 0, None).astype(np.int64), n, p)
    return np.where(k < 0, 0.0, np.where(k >= n, 1.0, inside))


def binom_sf(k, n, p):
    """P(X > k) for X ~ Binomial(n, p); 1 below 0 and 0 from n on, like scipy.stats.binom.sf."""
    k, n = np.floor(np.asarray(k, dtype=float)), np.asarray(n, dtype=np.int64)
    inside = bdtrc(np.clip(k, 0, None).astype(np.int64), n, p)
    return np.where(k < 0, 1.0, np.where(k >= n, 0.0, inside))


# the two-sided 95 % quantile of the standard normal
Z_95 = 1.959963984540054


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    adjusted = [math.nan] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
