"""The distribution tails from scipy.special agree with scipy.stats, edges included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from churn_pipeline.lib.probability import binom_cdf, binom_sf, normal_sf


def test_binomial_tails_match_scipy_stats_including_edges() -> None:
    n = np.repeat(np.arange(0, 41), 8 * 44)
    p = np.tile(np.repeat([0.0, 0.001, 0.1, 0.3, 0.5, 0.77, 0.999, 1.0], 44), 41)
    k = np.tile(np.arange(-2, 42), 41 * 8)
    assert np.allclose(binom_cdf(k, n, p), stats.binom.cdf(k, n, p), rtol=1e-12, atol=1e-300, equal_nan=True)
    assert np.allclose(binom_sf(k, n, p), stats.binom.sf(k, n, p), rtol=1e-12, atol=1e-300, equal_nan=True)
    # far tails keep their precision (p-values of 1e-50 are reported, not rounded to 0)
    assert binom_sf(900, 1000, 0.5) == pytest.approx(stats.binom.sf(900, 1000, 0.5), rel=1e-9)
    assert stats.binom.sf(900, 1000, 0.5) > 0


def test_normal_tail_matches_scipy_stats() -> None:
    z = np.linspace(-40, 40, 801)
    assert np.allclose(normal_sf(z), stats.norm.sf(z), rtol=1e-12, atol=0)
    assert float(normal_sf(1.959963984540054)) == pytest.approx(0.025, rel=1e-12)
