"""Statistics over seeds: the mean with its 95% Student-t interval.

    mean +- t_{0.975, n - 1} * s / sqrt(n),    s the sample standard deviation (ddof = 1)

The quantile t_{0.975, df} is computed exactly for every degree of freedom (no table that
falls back to the normal 1.96), from the Student-t distribution function

    F(t) = 1 - I_x(df / 2, 1 / 2) / 2,   x = df / (df + t^2),   t >= 0,

where I_x(a, b) is the regularised incomplete beta function, evaluated by its continued
fraction (Numerical Recipes, 3rd ed., section 6.4), and inverted by bisection. The tests
check it against SciPy's ``stdtrit``.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

__all__ = ["ci95", "t_quantile"]


def ci95(values) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval of the mean of ``values`` (NaNs dropped;
    half-width 0 for one value, both NaN for none)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n == 1:
        return float(values[0]), 0.0
    t = t_quantile(0.975, n - 1)
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(n))


@cache
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 <= p < 1) of Student's t with ``df`` >= 1 degrees of freedom."""
    if not 0.5 <= p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p!r}, df={df!r}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:  # bracket the quantile
        high *= 2.0
    for _ in range(200):  # bisection to the last bit
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return 0.5 * (low + high)


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0."""
    return 1.0 - 0.5 * _incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction where it converges fast (else by symmetry)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _incomplete_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - _log_beta(a, b)
    return math.exp(log_front) * _beta_fraction(x, a, b)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction 1 / (1 + d1 / (1 + d2 / (1 + ...))) of I_x(a, b), by the
    modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # d_{2m}
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # d_{2m+1}
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return h
