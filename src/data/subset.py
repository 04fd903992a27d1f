"""Deterministic, nested subsets of a training split (data-scarcity experiments such as DiffAugment's).

`train_subset(n, fraction, seed)` takes the first ceil(fraction * n) indices of one fixed
permutation of range(n) drawn from `seed`, so for one n and seed every smaller fraction is
a subset of every larger one (10 % is inside 20 %), and the same call always returns the
same indices. Fraction 1 returns every index.
"""

from __future__ import annotations

import math

import numpy as np


def subset_size(n: int, fraction: float) -> int:
    """ceil(fraction * n), at least 1: the number of slices a fraction keeps."""
    if n < 1:
        raise ValueError(f"cannot take a subset of an empty split (n = {n})")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # The small tolerance keeps 0.1 * 70 at 7 (float products such as 7.000000000000001 round up).
    return max(1, math.ceil(fraction * n - 1e-9))


def train_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted int64 indices of the `fraction` subset of n training items, nested across fractions for one seed."""
    keep = subset_size(n, fraction)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5B5E7])).permutation(n)
    return np.sort(order[:keep])
