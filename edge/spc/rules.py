"""Run rules on standardised values z = (x - centre) / sigma: Western Electric and Nelson.

Each rule looks at the last few points only, so a checker keeps a short window and answers, for
every new point, which of its configured rules fire at that point. Which rules apply is chosen
per measurement: every extra rule adds false alarms on a stable line (rule 1 alone fires once in
about 370 points on a normal process), so the defaults in `edge.spc.charts` apply them to
smoothed statistics, not to raw single items.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

RuleName = Literal[
    "nelson1",
    "nelson2",
    "nelson3",
    "nelson4",
    "nelson5",
    "nelson6",
    "nelson7",
    "nelson8",
    "we1",
    "we2",
    "we3",
    "we4",
]

#: What each rule means, for the alert text and the documentation.
RULE_TEXT: dict[str, str] = {
    "nelson1": "one point beyond 3 sigma",
    "nelson2": "nine points in a row on one side of the centre",
    "nelson3": "six points in a row steadily increasing or decreasing",
    "nelson4": "fourteen points in a row alternating up and down",
    "nelson5": "two of three points beyond 2 sigma on one side",
    "nelson6": "four of five points beyond 1 sigma on one side",
    "nelson7": "fifteen points in a row within 1 sigma (stratification)",
    "nelson8": "eight points in a row beyond 1 sigma on either side",
    "we1": "one point beyond 3 sigma",
    "we2": "two of three points beyond 2 sigma on one side",
    "we3": "four of five points beyond 1 sigma on one side",
    "we4": "eight points in a row on one side of the centre",
}


def _k_of_n_beyond(z: Sequence[float], k: int, n: int, limit: float) -> bool:
    if len(z) < n:
        return False
    last = z[-n:]
    if abs(last[-1]) <= limit:  # the rule fires at a point that is itself beyond
        return False
    side = 1.0 if last[-1] > 0 else -1.0
    return sum(1 for v in last if v * side > limit) >= k


def _same_side(z: Sequence[float], n: int) -> bool:
    if len(z) < n:
        return False
    last = z[-n:]
    return all(v > 0 for v in last) or all(v < 0 for v in last)


def _monotone(z: Sequence[float], n: int) -> bool:
    if len(z) < n:
        return False
    d = [b - a for a, b in zip(z[-n:-1], z[-n + 1 :], strict=True)]
    return all(v > 0 for v in d) or all(v < 0 for v in d)


def _alternating(z: Sequence[float], n: int) -> bool:
    if len(z) < n:
        return False
    d = [b - a for a, b in zip(z[-n:-1], z[-n + 1 :], strict=True)]
    return all(a * b < 0 for a, b in itertools.pairwise(d))


_RULES: dict[str, Callable[[Sequence[float]], bool]] = {
    "nelson1": lambda z: abs(z[-1]) > 3.0,
    "nelson2": lambda z: _same_side(z, 9),
    "nelson3": lambda z: _monotone(z, 6),
    "nelson4": lambda z: _alternating(z, 14),
    "nelson5": lambda z: _k_of_n_beyond(z, 2, 3, 2.0),
    "nelson6": lambda z: _k_of_n_beyond(z, 4, 5, 1.0),
    "nelson7": lambda z: len(z) >= 15 and all(abs(v) < 1.0 for v in z[-15:]),
    "nelson8": lambda z: len(z) >= 8 and all(abs(v) > 1.0 for v in z[-8:]),
    "we4": lambda z: _same_side(z, 8),
}
_RULES["we1"] = _RULES["nelson1"]
_RULES["we2"] = _RULES["nelson5"]
_RULES["we3"] = _RULES["nelson6"]

WINDOW = 15  # the longest rule's look-back


class RuleChecker:
    """The configured rules over a sliding window of standardised values."""

    def __init__(self, rules: Sequence[str]):
        unknown = [r for r in rules if r not in _RULES]
        if unknown:
            raise ValueError(f"unknown SPC rule(s) {unknown}; known: {sorted(_RULES)}")
        self.rules = list(rules)
        self.z: deque[float] = deque(maxlen=WINDOW)

    def push(self, z: float) -> list[str]:
        """Add a point; the rules that fire at it."""
        self.z.append(float(z))
        window = list(self.z)
        return [r for r in self.rules if _RULES[r](window)]
