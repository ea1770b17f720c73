"""Accuracy with a bootstrap interval, and whether one pattern beats another on the same items.

Paired comparisons use the same items for both: the difference's interval is a paired
bootstrap, and its significance an exact McNemar test (a two-sided binomial test on the items
where exactly one of the two was right), which is what a paired right/wrong comparison needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def bootstrap_accuracy(right: Sequence[bool], seed: int = 0) -> Interval:
    """Accuracy and its 95 % percentile bootstrap interval over items."""
    x = np.asarray(right, dtype=float)
    if x.size == 0:
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(RESAMPLES, x.size))].mean(axis=1)
    return Interval(float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def paired_difference(a: Sequence[bool], b: Sequence[bool], seed: int = 0) -> Interval:
    """accuracy(a) − accuracy(b) on the same items, with a paired 95 % bootstrap interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(RESAMPLES, d.size))].mean(axis=1)
    return Interval(float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value: P(a split of the discordant items at least this uneven)."""
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)  # exact big-int division
    return min(1.0, 2 * tail)
