"""A metric's value and its bootstrap resamples, turned into the schema's Estimate and Difference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.evaluation.schema import Comparison, Difference, Estimate, Row, higher_is_better
from src.metrics.bootstrap import (CI_LEVEL, percentile_interval, resample_indices, resampled_means, resampled_ratios,
                                   shifted_percentile_interval, verdict)


@dataclass(frozen=True)
class Resamples:
    """The bootstrap draws of one test set of n slices, shared by every metric and method on it.

    slices: (bootstrap_resamples, n) for per-slice metrics; sets: the first
    bootstrap_set_resamples rows of the same draws, for the set-level distances that are
    recomputed on every resample. Every method is resampled with the same rows: paired.
    """
    slices: np.ndarray
    sets: np.ndarray

    @classmethod
    def draw(cls, n: int, resamples: int, set_resamples: int, seed: int) -> Resamples:
        indices = resample_indices(n, max(resamples, set_resamples), seed)
        return cls(indices[:resamples], indices[:set_resamples])


@dataclass(frozen=True)
class Statistic:
    """A metric on the whole test set (`value`) and on each resample of it (`resampled`, (B,)).

    `set_level`: a distance between image sets (SWD, FD, KID), whose interval is shifted by the
    resampling bias (see shifted_percentile_interval); per-slice means are not.
    """
    value: float
    resampled: np.ndarray
    n: int
    set_level: bool = False

    def __sub__(self, other: Statistic) -> Statistic:
        """A - B on the same resamples: the paired difference."""
        if self.resampled.shape != other.resampled.shape or self.set_level != other.set_level or self.n != other.n:
            raise ValueError("a paired difference needs two statistics of one kind on the same resamples")
        return Statistic(self.value - other.value, self.resampled - other.resampled, self.n, self.set_level)

    def interval(self) -> tuple[float, float]:
        if self.set_level:
            return shifted_percentile_interval(self.value, self.resampled, CI_LEVEL)
        return percentile_interval(self.resampled, CI_LEVEL)

    def estimate(self, std: float | None = None) -> Estimate:
        low, high = self.interval()
        return Estimate(value=self.value, ci95_low=low, ci95_high=high, n=self.n, std=std)

    def difference(self, higher_is_better: bool) -> Difference:
        """This statistic read as A - B: is A better than B (interval beside 0), worse, or indistinguishable?"""
        low, high = self.interval()
        return Difference(value=self.value, ci95_low=low, ci95_high=high, n=self.n,
                          better=verdict(low, high, higher_is_better))


def mean_statistic(values: np.ndarray, indices: np.ndarray) -> Statistic:
    """The NaN-ignoring mean of per-slice `values` (n,) and of each resample of them."""
    values = np.asarray(values, dtype=np.float64)
    value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return Statistic(value, resampled_means(values, indices), len(values))


def pooled_statistic(numerators: np.ndarray, denominators: np.ndarray, indices: np.ndarray) -> Statistic:
    """sum(numerators) / sum(denominators) over the slices, and over each resample (e.g. pooled Dice)."""
    identity = np.arange(len(numerators))[None]
    return Statistic(float(resampled_ratios(numerators, denominators, identity)[0]),
                     resampled_ratios(numerators, denominators, indices), len(numerators))


def estimates(statistics: dict[str, Statistic]) -> Row:
    return {key: statistic.estimate() for key, statistic in statistics.items()}


def differences(a: dict[str, Statistic], b: dict[str, Statistic], keys: tuple[str, ...]) -> Comparison:
    """A - B for each of `keys`, paired, each judged in its own metric's direction."""
    return {key: (a[key] - b[key]).difference(higher_is_better(key)) for key in keys}
