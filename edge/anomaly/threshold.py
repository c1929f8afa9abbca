"""The decision threshold from good images only, at a stated false-reject target.

The scores used are *held-out* scores: each good image is scored by a memory fitted
without it (k-fold), as an unseen good unit will be on the line. A threshold at the
highest held-out score grows with the number of good images and soon rejects almost
nothing (one odd good image sets it); a quantile at the target false-reject rate is what
the plant asked for. With few images the empirical quantile is coarse, so the log
scores are modelled as normal (scores are positive and right-skewed) and the threshold
is the (1 - target) quantile of the *next* good unit's score under that fit (Student t
with n - 1 degrees of freedom, scale s * sqrt(1 + 1/n): the mean and spread are
estimated from n scores, not known), never below the empirical quantile. With 20 images
that is 12 % wider in log score than the plain normal quantile; with 150, 1 %.

A good image whose held-out score is far out (`outliers`) is named for the technician
(a good set with a defect in it: on VisA capsules, 2 of the 150 "normal" photos had dirt
or a fibre on the cloth beside the capsules) and left out of the fit: one such image in a
hundred sets the empirical 99 % quantile by itself (there, recall 0.65 instead of 0.85 at
the same 0 of 50 unseen good photos rejected).
"""

from __future__ import annotations

import numpy as np

METHOD = (
    "k-fold held-out scores, far-out good images left out and named, log-normal fit, "
    "(1 - target) quantile of the next unit's score (Student t prediction), never below "
    "the empirical quantile"
)


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (bisection on its CDF; no SciPy on the line)."""
    if df < 1 or not 0 < p < 1:
        raise ValueError(f"t quantile needs df >= 1 and 0 < p < 1, got {df}, {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    # CDF(x) = 1/2 + integral_0^x of the density (Simpson's rule on a fine grid)
    from math import exp, lgamma, log, pi

    c = exp(lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * log(df * pi))

    def cdf(x: float) -> float:
        u = np.linspace(0.0, x, 2001)
        f = c * (1.0 + u * u / df) ** (-(df + 1) / 2)
        h = x / 2000
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def threshold_for(scores: np.ndarray, target_frr: float) -> float:
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3 or np.any(s <= 0):
        raise ValueError("need at least 3 positive held-out scores for a threshold")
    if not 0 < target_frr < 0.5:
        raise ValueError(f"target false-reject rate {target_frr} must be in (0, 0.5)")
    n = len(s)
    t = t_quantile(1.0 - target_frr, n - 1) * np.sqrt(1.0 + 1.0 / n)
    logs = np.log(s)
    parametric = float(np.exp(logs.mean() + t * logs.std(ddof=1)))
    empirical = float(np.quantile(s, 1.0 - target_frr))
    return max(parametric, empirical)


def threshold_without_outliers(
    scores: np.ndarray, target_frr: float, limit: float = 6.0
) -> tuple[float, list[int]]:
    """The threshold from the held-out scores that are not far out, and the far-out ones."""
    s = np.asarray(scores, dtype=np.float64)
    far = outliers(s, limit)
    return threshold_for(np.delete(s, far), target_frr), far


def outliers(scores: np.ndarray, limit: float = 6.0) -> list[int]:
    """Indices of good images whose held-out score is far out (robust z above `limit`):
    a good set that contains a defect, or an image of something else."""
    logs = np.log(np.asarray(scores, dtype=np.float64))
    med = np.median(logs)
    mad = np.median(np.abs(logs - med)) * 1.4826
    if mad <= 0:
        return []
    return [int(i) for i in np.nonzero((logs - med) / mad > limit)[0]]
