"""Bootstrap intervals and paired comparisons over test slices (Efron & Tibshirani 1993): pure numpy functions.

The unit that is resampled is the test slice. One index matrix, drawn once per test set,
is shared by every metric and every method of that set: a comparison of two methods then
sees the same slices in every resample (a paired bootstrap), so the slice-to-slice
difficulty that both methods share cancels out of their difference.

Intervals are percentile intervals (Efron & Tibshirani 1993, Sec. 13.3): the 2.5 % and
97.5 % quantiles of the statistic over the resamples. Percentile rather than BCa because
BCa's bias correction degenerates (infinite z0) when every resample lies on one side of
the estimate, which small-n set distances such as the Fréchet distance do.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

CI_LEVEL = 0.95
INDISTINGUISHABLE = "indistinguishable"
Better = bool | Literal["indistinguishable"]


def resample_indices(n: int, n_resamples: int, seed: int, stream: int = 0) -> np.ndarray:
    """(n_resamples, n) int64 indices in [0, n), drawn with replacement.

    The same (seed, stream) gives the same draws; a second kind of draw from one seed (the
    downstream seeds beside the slices) takes another stream, so the two are independent.
    """
    if n < 1 or n_resamples < 1:
        raise ValueError(f"need n >= 1 items and n_resamples >= 1, got n={n}, n_resamples={n_resamples}")
    return np.random.default_rng((seed, stream)).integers(0, n, size=(n_resamples, n))


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n) float64: how often each of the n items is drawn in each of the B resamples (rows sum to n)."""
    indices = np.asarray(indices)
    counts = np.zeros((indices.shape[0], n))
    np.add.at(counts, (np.arange(indices.shape[0])[:, None], indices), 1.0)
    return counts


def resampled_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean of `values` (n,) or (n, k) over the items of each resample: (B,) or (B, k).

    NaN values (e.g. a Spearman correlation of a constant slice) are left out, as the
    point estimate `np.nanmean(values, axis=0)` leaves them out; a resample of NaNs only is NaN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": that resample is NaN
        return np.nanmean(np.asarray(values, dtype=np.float64)[np.asarray(indices)], axis=1)


def resampled_ratios(numerators: np.ndarray, denominators: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Ratio of sums over the items of each resample: sum(num[i]) / sum(den[i]), shape (B,) or (B, k).

    For statistics pooled over slices, such as Dice pooled over every pixel of the set:
    numerators, denominators (n,) or (n, k). 0/0 is NaN.
    """
    indices = np.asarray(indices)
    num = np.asarray(numerators, dtype=np.float64)[indices].sum(axis=1)
    den = np.asarray(denominators, dtype=np.float64)[indices].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def percentile_interval(resampled: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """(low, high): the (1 - level) / 2 and (1 + level) / 2 quantiles of a statistic over resamples.

    resampled: (B,) values of the statistic, one per resample. NaN resamples are left out;
    if none is finite the interval is (NaN, NaN).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    finite = np.asarray(resampled, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def verdict(low: float, high: float, higher_is_better: bool) -> Better:
    """Decision rule for a difference A - B with interval [low, high].

    True: A is better (the interval lies entirely on A's good side of 0); False: B is
    better; "indistinguishable": the interval contains 0 (or is NaN).
    """
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return INDISTINGUISHABLE
    a_is_higher = low > 0
    return a_is_higher == higher_is_better


def shifted_percentile_interval(estimate: float, resampled: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of `resampled - bias`, bias = mean(resampled) - estimate (Efron & Tibshirani 1993, eq. 10.1).

    For set-level distances (SWD, FD, KID). A resample with replacement holds about 63 % distinct
    slices, and distances between image sets grow as the number of distinct images falls
    (the small-n bias of FD and SWD), so their resamples sit above the full-set value and a
    plain percentile interval can miss the estimate it belongs to. The shift keeps the
    resamples' spread and removes that offset.
    """
    resampled = np.asarray(resampled, dtype=np.float64)
    finite = resampled[np.isfinite(resampled)]
    if finite.size == 0 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    return percentile_interval(finite - (finite.mean() - estimate), level)
