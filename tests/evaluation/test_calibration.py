"""The SR calibration on synthetic slices: k fitted on val covers val by construction and exchangeable test slices."""

import numpy as np
import pytest
import torch

from src.evaluation import calibration, plots, schema
from src.evaluation.intervals import Resamples


def synthetic_split(seed: int, n: int = 12, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, HR, sigma): HR with a background of -1 around a disc; output = HR + sigma-scaled noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    disc = (np.hypot(yy, xx) < size / 3)[None, None]
    hr = np.where(disc, rng.uniform(-0.8, 0.9, (n, 1, size, size)), -1.0)
    sigma = rng.lognormal(-3.5, 0.6, hr.shape) * np.where(disc, 1.0, 0.1)
    output = hr + 1.8 * sigma * rng.standard_normal(hr.shape)
    return tuple(torch.from_numpy(a.astype(np.float32)) for a in (output, hr, sigma))


def maps(seed: int) -> calibration.SplitMaps:
    return calibration.SplitMaps.of(*synthetic_split(seed))


def test_calibration_covers_val_by_construction_and_exchangeable_test_slices():
    val, test = maps(0), maps(1)
    draws = Resamples.draw(12, 200, 20, seed=0)
    result = calibration.calibrate(val, test, calibration.val_draws(12, 200, seed=0), draws, seed=0)
    stats = result.statistics
    assert set(stats) == set(schema.CALIBRATION)
    assert stats["coverage_val"].value >= calibration.TARGET_COVERAGE
    assert stats["coverage_test"].value == pytest.approx(calibration.TARGET_COVERAGE, abs=0.03)
    assert stats["k_scale"].value == result.k
    low, high = stats["k_scale"].interval()
    assert low <= result.k <= high and stats["k_scale"].n == 12
    # the noise is 1.8 sigma Gaussian: the 90 % bound is about 1.645 * 1.8 sigma
    assert result.k == pytest.approx(1.645 * 1.8, rel=0.1)
    assert stats["spearman_foreground"].value > 0.3
    assert stats["mean_bound"].value > stats["mean_abs_error"].value
    assert len(result.reliability) == calibration.RELIABILITY_BINS


def test_the_background_is_left_out():
    val = maps(0)
    output, hr, sigma = synthetic_split(2)
    output = torch.where(hr == -1.0, torch.full_like(hr, 0.5), output)  # huge errors on the background only
    test = calibration.SplitMaps.of(output, hr, sigma)
    k = calibration.fit_scale(val)
    covered, foreground = calibration.covered_counts(test, k)
    assert covered.sum() / foreground.sum() == pytest.approx(0.9, abs=0.03)
    assert foreground.sum() == (hr > -1).sum()


def test_a_slice_without_foreground_is_an_error():
    output, hr, sigma = synthetic_split(0, n=2)
    hr[1] = -1.0
    with pytest.raises(ValueError, match="foreground"):
        calibration.SplitMaps.of(output, hr, sigma)


def test_section_and_reliability_points_follow_the_schema():
    val, test = maps(3), maps(4)
    draws = Resamples.draw(12, 50, 5, seed=1)
    indices = calibration.val_draws(12, 50, seed=1)
    calibrated = {m: calibration.calibrate(val, test, indices, draws, seed=1) for m in schema.CALIBRATED_MODELS}
    section = calibration.section(calibrated, n_val=12)
    assert section.calibration_split == "val" and section.target_coverage == 0.9
    assert set(section.psnr_model) == set(schema.CALIBRATION)
    points = plots.reliability_points({m: c.reliability for m, c in calibrated.items()})
    assert len(points) == 2 * calibration.RELIABILITY_BINS
    assert {"method", "bin", "predicted", "observed_quantile", "observed_mean", "coverage", "count"} == set(points[0])
    assert plots.to_json(points)  # finite: valid JSON for the browser


def test_error_detection_auroc_against_sklearn_and_known_cases():
    from sklearn.metrics import roc_auc_score

    output, hr, sigma = synthetic_split(3, n=3)
    test = calibration.SplitMaps.of(output, hr, sigma)
    got = calibration.error_detection_auroc(test)
    for i in range(3):
        m = test.foreground[i]
        errors, spread = test.abs_error[i][m], np.maximum(test.sigma[i][m], calibration.SIGMA_FLOOR)
        worst = errors >= np.quantile(errors, 0.9)
        assert got[i] == pytest.approx(roc_auc_score(worst, spread), abs=1e-6)
    assert 0.6 < got.mean() < 1.0             # sigma-scaled noise: sigma finds the big errors, not perfectly
    # sigma equal to the error ranks the worst pixels first (AUROC 1); an unrelated sigma knows nothing (~0.5).
    perfect = calibration.SplitMaps.of(output, hr, (output - hr).abs() + 1e-3)
    assert calibration.error_detection_auroc(perfect) == pytest.approx(np.ones(3))
    rng = np.random.default_rng(0)
    unrelated = torch.from_numpy(rng.uniform(0.01, 0.1, sigma.shape).astype(np.float32))
    assert abs(calibration.error_detection_auroc(calibration.SplitMaps.of(output, hr, unrelated)).mean() - 0.5) < 0.06
