"""Control charts: limits from a reference window, and the statistic each chart plots.

Why these charts. A single item's measurement is noisy and there are thousands of items per
hour: Shewhart rules on raw items would raise a false deviation every few hundred items. The
default for a measurement is therefore an EWMA (exponentially weighted moving average) with a
small weight, which sees a slow drift of a fraction of a sigma long before single items leave
the spec, at a false-alarm rate of well under one per 20,000 stable items. CUSUM is the
alternative for a known shift size; an individuals chart with run rules is there for the
measurements a plant wants judged item by item (few items, or a validated baseline).
Reject reasons are counts, judged by a p-chart over subgroups of items.

Sigma comes from the average moving range (MR-bar / 1.128), not the standard deviation: a
reference window that already drifts a little does not inflate it much.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from edge.spc.rules import RuleChecker

D2 = 1.128  # E[moving range of two] / sigma for a normal process


class ReferenceError(ValueError):
    """The reference window cannot give control limits (too few values, no variation)."""


@dataclass(frozen=True)
class Limits:
    """Centre and sigma of a measurement in its reference window."""

    centre: float
    sigma: float
    n: int  # values the limits were computed from


def reference_limits(values: Iterable[float], *, min_n: int = 30) -> Limits:
    """Limits from a reference window; missing (non-finite) values are left out, not zeros."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(xs) < max(min_n, 2):
        raise ReferenceError(f"only {len(xs)} values in the reference window (need {min_n})")
    centre = sum(xs) / len(xs)
    mr = [abs(b - a) for a, b in itertools.pairwise(xs)]
    sigma = sum(mr) / len(mr) / D2
    if sigma <= 1e-9 * max(1.0, abs(centre)):
        raise ReferenceError(f"no variation in the reference window (all {xs[0]:g})")
    return Limits(centre, sigma, len(xs))


@dataclass(frozen=True)
class Point:
    """One charted point: the statistic, its limits, and the rules that fire at it."""

    stat: float
    lcl: float
    ucl: float
    signals: tuple[str, ...]

    @property
    def inside(self) -> bool:
        return self.lcl <= self.stat <= self.ucl


class IndividualsChart:
    """Each value against centre +/- 3 sigma, with the configured run rules."""

    kind = "individuals"

    def __init__(self, limits: Limits, rules: Iterable[str] = ("we1",)):
        self.lim = limits
        self.checker = RuleChecker(list(rules))

    def update(self, x: float) -> Point:
        c, s = self.lim.centre, self.lim.sigma
        fired = self.checker.push((x - c) / s)
        return Point(x, c - 3 * s, c + 3 * s, tuple(fired))


class EwmaChart:
    """z_t = lam * x_t + (1 - lam) * z_(t-1), signalled outside centre +/- L sigma_z(t)."""

    kind = "ewma"

    def __init__(self, limits: Limits, lam: float = 0.05, L: float = 4.5):
        if not 0 < lam <= 1:
            raise ValueError(f"EWMA weight {lam} outside (0, 1]")
        self.lim, self.lam, self.L = limits, lam, L
        self.z = limits.centre
        self.t = 0

    def update(self, x: float) -> Point:
        self.t += 1
        self.z = self.lam * x + (1 - self.lam) * self.z
        var = self.lam / (2 - self.lam) * (1 - (1 - self.lam) ** (2 * self.t))
        if self.lim.n:  # the centre is itself an estimate from n values: widen by its error
            var += 1.0 / self.lim.n
        half = self.L * self.lim.sigma * math.sqrt(var)
        c = self.lim.centre
        out = not (c - half <= self.z <= c + half)
        return Point(self.z, c - half, c + half, ("ewma",) if out else ())


class CusumChart:
    """Tabular CUSUM: one-sided sums of deviations beyond k sigma, signalled above h sigma."""

    kind = "cusum"

    def __init__(self, limits: Limits, k: float = 0.5, h: float = 8.0):
        self.lim, self.k, self.h = limits, k, h
        self.hi = 0.0
        self.lo = 0.0

    def update(self, x: float) -> Point:
        c, s = self.lim.centre, self.lim.sigma
        self.hi = max(0.0, self.hi + (x - c) / s - self.k)
        self.lo = max(0.0, self.lo - (x - c) / s - self.k)
        stat = self.hi if self.hi >= self.lo else -self.lo
        out = self.hi > self.h or self.lo > self.h
        return Point(stat, -self.h, self.h, ("cusum",) if out else ())


class PChart:
    """The share of items rejected for one reason, per subgroup of `n` items.

    Reject counts are small (about one per subgroup), where the normal approximation of the
    textbook p-chart fires far too often; the upper limit is therefore the exact binomial
    count whose tail probability is below `alpha` (probability limits). The centre is the
    reference rate counted with one event more than seen (an upper estimate from a few
    hundred items), so a reference with no such reject does not turn the first ones into a
    deviation. Only a rise is a
    deviation: fewer rejects than usual is not a process problem. Run rules (`rules`) apply to
    the standardised subgroup rates, for slower rises.
    """

    kind = "p"

    def __init__(
        self,
        rejects: int,
        items: int,
        n: int = 500,
        rules: Iterable[str] = (),
        alpha: float = 0.001,
    ):
        if items <= 0:
            raise ReferenceError("no items in the reference window")
        self.p = (rejects + 1) / (items + 1)
        self.n = n
        self.ucl_count = _binomial_upper(n, self.p, alpha)
        self.checker = RuleChecker([r for r in rules if r not in ("we1", "nelson1")])
        self.count = 0
        self.seen = 0

    def update(self, rejected: bool) -> Point | None:
        """Count one item; a point at the end of each subgroup, else None."""
        self.seen += 1
        self.count += bool(rejected)
        if self.seen < self.n:
            return None
        count = self.count
        self.seen = self.count = 0
        sd = math.sqrt(self.p * (1 - self.p) / self.n)
        fired = self.checker.push((count / self.n - self.p) / sd)
        if count >= self.ucl_count:
            fired.insert(0, "p_limit")
        if count / self.n <= self.p:
            fired = []
        return Point(count / self.n, 0.0, (self.ucl_count - 1) / self.n, tuple(fired))


def _binomial_upper(n: int, p: float, alpha: float) -> int:
    """The smallest count c with P(X >= c) <= alpha for X ~ Binomial(n, p)."""
    pmf = (1 - p) ** n
    cdf = pmf
    c = 0
    while 1.0 - cdf > alpha and c < n:
        pmf *= (n - c) / (c + 1) * p / (1 - p)
        c += 1
        cdf += pmf
    return c + 1
