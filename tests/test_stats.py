"""The 95% t-interval over seeds: exact quantiles for every degree of freedom."""

import math
import statistics

import numpy as np
import pytest

from lakelab.stats import ci95, t_quantile


def test_t_quantile_matches_scipy_for_every_degree_of_freedom():
    stdtrit = pytest.importorskip("scipy.special").stdtrit  # an independent implementation
    for df in [*range(1, 121), 200, 500, 1000, 10**4, 10**6]:
        rel = 1e-10 if df <= 1000 else 1e-8  # the continued fraction loses digits for huge df
        for p in (0.9, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(stdtrit(df, p), rel=rel), (df, p)


def test_t_quantile_closed_forms_and_limits():
    # df = 1 is the Cauchy distribution: t_p = tan(pi (p - 1/2)); df = 2 has the distribution
    # function 1/2 + t / (2 sqrt(2 + t^2)), so t_p = 2 sqrt(2) q / sqrt(1 - 4 q^2), q = p - 1/2
    for p in (0.6, 0.9, 0.975):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        q = p - 0.5
        assert t_quantile(p, 2) == pytest.approx(
            2 * 2**0.5 * q / math.sqrt(1 - 4 * q * q), rel=1e-12
        )
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)  # the median
    # large df tends to the normal quantile, from above
    normal = statistics.NormalDist().inv_cdf(0.975)
    assert normal < t_quantile(0.975, 10**6) < normal + 1e-5
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.975, 0)


def test_ci95_does_not_fall_back_to_1_96_after_30_degrees():
    # a table of 30 quantiles used to fall back to 1.96 for 31 or more values; t(0.975, 39) is
    # 2.0227 (a printed t table), 3% wider
    values = np.arange(40.0)
    m, h = ci95(values)
    assert m == pytest.approx(19.5)
    assert h / (values.std(ddof=1) / math.sqrt(40)) == pytest.approx(2.0227, abs=1e-4)


def test_ci95_matches_a_hand_computed_t_interval():
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    # t(0.975, 2 df) = 2 sqrt(2) 0.475 / sqrt(1 - 4 0.475^2) = 4.3027 (df = 2 closed form), sd 1
    t2 = 2 * 2**0.5 * 0.475 / math.sqrt(1 - 4 * 0.475**2)
    assert half == pytest.approx(t2 / math.sqrt(3), rel=1e-12)
    assert ci95([5.0]) == (5.0, 0.0)


def test_ci95_ignores_nans():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 40))
    values[0, 5:] = np.nan  # 5 values: t(0.975, 4 df) = 2.776 (printed tables)
    values[1, 1:] = np.nan  # one value
    values[2] = np.nan  # none
    kept = values[0, :5].tolist()
    m, h = ci95(values[0])
    assert m == pytest.approx(statistics.fmean(kept), rel=1e-12)
    assert h == pytest.approx(2.776 * statistics.stdev(kept) / 5**0.5, rel=1e-3)
    assert ci95(values[1]) == (values[1, 0], 0.0)
    assert all(math.isnan(x) for x in ci95(values[2]))
