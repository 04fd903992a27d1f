"""Split-conformal calibration of a spread map: the finite-sample quantile, its coverage guarantee, reliability bins."""

import math

import numpy as np
import pytest

from src.metrics.uncertainty import conformal_quantile, normalized_scores, reliability_bins, within_bound


def test_conformal_quantile_is_the_ceil_n_plus_1_rank():
    scores = np.arange(1.0, 20.0)[::-1]              # 19 scores, 1..19, unsorted
    assert conformal_quantile(scores, 0.1) == 18.0    # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(np.arange(1.0, 10.0), 0.1) == 9.0  # ceil(10 * 0.9) = 9 exactly, not 10 (float round-off)
    assert conformal_quantile(np.arange(1.0, 9.0), 0.1) == math.inf  # ceil(9 * 0.9) = 9 > 8 scores: no finite bound
    assert conformal_quantile([0.0, math.inf, 1.0, 2.0], 0.5) == 2.0  # ceil(5 * 0.5) = 3rd


@pytest.mark.parametrize("bad", [[], [1.0, np.nan]])
def test_conformal_quantile_rejects_empty_or_nan_scores(bad):
    with pytest.raises(ValueError):
        conformal_quantile(bad, 0.1)


def test_the_floor_keeps_a_zero_spread_finite():
    scores = normalized_scores(np.array([0.0, 0.2, 0.2]), np.array([0.0, 0.0, 0.1]), sigma_floor=0.01)
    np.testing.assert_allclose(scores, [0.0, 20.0, 2.0])
    with pytest.raises(ValueError):
        normalized_scores(np.ones(2), np.ones(2), sigma_floor=0.0)


def heteroscedastic(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(|error|, sigma): a spread map that is right up to an unknown scale (2.7) and heavy-tailed errors."""
    sigma = rng.lognormal(-3.0, 0.8, n)
    return np.abs(2.7 * sigma * rng.standard_t(5, n)), sigma


@pytest.mark.parametrize("n", [10, 99, 1000, 4321])
def test_coverage_on_the_calibration_data_is_at_least_the_level_by_construction(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        error, sigma = heteroscedastic(rng, n)
        error[rng.random(n) < 0.2] = 0.0  # ties at 0 too
        k = conformal_quantile(normalized_scores(error, sigma, 1e-6), 0.1)
        assert np.mean(within_bound(error, sigma, k, 1e-6)) >= 0.9


def test_coverage_on_exchangeable_held_out_data_is_the_level_within_tolerance():
    # Split conformal: marginal coverage is in [1 - alpha, 1 - alpha + 1 / (n + 1)]; one draw's coverage
    # scatters around it by about sqrt(0.09 / n) from the calibration set and the same from the test set.
    rng = np.random.default_rng(0)
    n = m = 5000
    coverages = []
    for _ in range(200):
        cal_error, cal_sigma = heteroscedastic(rng, n)
        test_error, test_sigma = heteroscedastic(rng, m)
        k = conformal_quantile(normalized_scores(cal_error, cal_sigma, 1e-6), 0.1)
        coverages.append(np.mean(within_bound(test_error, test_sigma, k, 1e-6)))
    coverages = np.array(coverages)
    assert np.all(np.abs(coverages - 0.9) <= 0.03)
    assert 0.9 - 0.003 <= coverages.mean() <= 0.9 + 1 / (n + 1) + 0.003


def test_coverage_is_not_guaranteed_when_held_out_errors_are_larger():
    # The guarantee needs exchangeability: errors twice as large on the test data break it, visibly.
    rng = np.random.default_rng(1)
    cal_error, cal_sigma = heteroscedastic(rng, 5000)
    test_error, test_sigma = heteroscedastic(rng, 5000)
    k = conformal_quantile(normalized_scores(cal_error, cal_sigma, 1e-6), 0.1)
    assert np.mean(within_bound(2 * test_error, test_sigma, k, 1e-6)) < 0.8


def test_reliability_bins_of_a_calibrated_bound_lie_on_the_diagonal():
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.01, 0.1, 200_000)
    error = np.abs(sigma * rng.standard_normal(sigma.size))
    bound = 1.6449 * sigma  # the 90 % quantile of |N(0, sigma^2)|: calibrated in every bin
    bins = reliability_bins(bound, error, 10, 0.9)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == sigma.size
    assert [b["predicted"] for b in bins] == sorted(b["predicted"] for b in bins)
    for b in bins:
        assert b["coverage"] == pytest.approx(0.9, abs=0.01)
        assert b["observed_quantile"] == pytest.approx(b["predicted"], rel=0.03)
        assert b["observed_mean"] == pytest.approx(b["predicted"] / 1.6449 * math.sqrt(2 / math.pi), rel=0.03)


def test_reliability_bins_show_a_flat_map_as_a_flat_line():
    rng = np.random.default_rng(3)
    error = np.abs(rng.standard_normal(10_000))
    bins = reliability_bins(rng.uniform(1.0, 2.0, 10_000), error, 5, 0.9)  # a bound unrelated to the error
    quantiles = [b["observed_quantile"] for b in bins]
    assert max(quantiles) - min(quantiles) < 0.2
    with pytest.raises(ValueError):
        reliability_bins(np.ones(3), np.ones(3), 10, 0.9)
