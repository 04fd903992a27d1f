"""Tests for the Frechet distance, KID and sliced Wasserstein distance."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from src.metrics.distribution import frechet_distance, kernel_distance, sliced_wasserstein_distance


def _frechet_reference(a: np.ndarray, b: np.ndarray) -> float:
    # Heusel et al. 2017 with scipy's matrix square root, as pytorch-fid computes it.
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * covmean))


def test_frechet_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.3 + 0.2
    assert frechet_distance(a, b) == pytest.approx(_frechet_reference(a, b), rel=1e-8)


def test_frechet_one_dimensional_closed_form_and_torch_input():
    # In 1-D: d^2 = (m_a - m_b)^2 + (s_a - s_b)^2 with unbiased standard deviations.
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 1.0, size=(500, 1)), rng.normal(3.0, 2.0, size=(400, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(expected, rel=1e-5)


def test_frechet_identical_sets_is_zero_even_when_singular():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 64))  # N < D: singular covariance
    # sqrt of the ~1e-15 round-off eigenvalues of the singular product leaves ~1e-6 (scale ~100).
    assert abs(frechet_distance(a, a)) < 1e-4
    assert np.isfinite(frechet_distance(a, rng.normal(size=(20, 64))))


def test_frechet_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def _unbiased_mmd_reference(a: np.ndarray, b: np.ndarray) -> float:
    # Binkowski et al. 2018, eq. 1 (unbiased MMD^2), kernel (x.y/d + 1)^3, written out in numpy.
    d, m = a.shape[1], a.shape[0]
    k_aa = (a @ a.T / d + 1) ** 3
    k_bb = (b @ b.T / d + 1) ** 3
    k_ab = (a @ b.T / d + 1) ** 3
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2 * k_ab.mean())


def test_kid_matches_numpy_reference_on_full_sets():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 8)), rng.normal(0.5, 1.0, size=(40, 8))
    # subset_size == N: every subset holds all rows, so each draw equals the full-set estimate.
    mean, std = kernel_distance(a, b, n_subsets=5, subset_size=40, seed=0)
    assert mean == pytest.approx(_unbiased_mmd_reference(a, b), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_same_distribution_near_zero_shifted_clearly_positive():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    shifted = rng.normal(0.5, 1.0, size=(300, 32))
    same_mean, _ = kernel_distance(a, b, n_subsets=20, subset_size=100, seed=0)
    shifted_mean, shifted_std = kernel_distance(a, shifted, n_subsets=20, subset_size=100, seed=0)
    assert shifted_mean > 5 * shifted_std > 0
    assert abs(same_mean) < 0.05 * shifted_mean


def test_kid_is_unbiased_over_many_draws():
    # The unbiased estimator averages to 0 for same-distribution pairs; the biased (V-statistic)
    # one, with the diagonal kept, does not - which shows the test can tell them apart.
    rng = np.random.default_rng(5)
    unbiased, biased = [], []
    for _ in range(40):
        a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
        unbiased.append(kernel_distance(a, b, n_subsets=1, subset_size=30, seed=0)[0])
        k = lambda x, y: (x @ y.T / 4 + 1) ** 3  # noqa: E731
        biased.append(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())
    unbiased, biased = np.array(unbiased), np.array(biased)
    standard_error = unbiased.std(ddof=1) / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 3 * standard_error
    assert biased.mean() > 3 * biased.std(ddof=1) / np.sqrt(len(biased))


def test_kid_deterministic_and_clamps_subset_size():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(30, 8))
    assert kernel_distance(a, b, 10, 20, seed=7) == kernel_distance(a, b, 10, 20, seed=7)
    assert kernel_distance(a, b, 10, 20, seed=7) != kernel_distance(a, b, 10, 20, seed=8)
    # subset_size 1000 is clamped to 30: b is used whole in every draw.
    assert np.isfinite(kernel_distance(a, b, 3, 1000, seed=0)[0])
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(a, b[:1], 3, 10, seed=0)


def _smooth_images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size, size, generator=generator)
    kernel = torch.ones(1, 1, 5, 5) / 25
    return F.conv2d(F.pad(noise, (2, 2, 2, 2), mode="circular"), kernel)


def test_swd_levels_and_zero_for_identical_sets():
    images = _smooth_images(8, seed=0)
    result = sliced_wasserstein_distance(images, images.clone())
    assert list(result) == ["level_64px", "level_32px", "level_16px", "mean"]
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in result.values())


def test_swd_symmetric_including_unequal_counts():
    a, b = _smooth_images(12, seed=1), _smooth_images(7, seed=2)
    forward = sliced_wasserstein_distance(a, b, seed=3)
    backward = sliced_wasserstein_distance(b, a, seed=3)
    assert forward == pytest.approx(backward, rel=1e-9)
    assert forward["mean"] > 0


def test_swd_grows_with_distortion_strength():
    images = _smooth_images(8, seed=4)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(5))
    means = [sliced_wasserstein_distance(images, images + s * noise)["mean"] for s in (0.05, 0.15, 0.4, 1.0)]
    assert all(lo < hi for lo, hi in zip(means, means[1:])), means


def test_swd_other_distribution_farther_than_same_distribution():
    reference, same = _smooth_images(16, seed=6), _smooth_images(16, seed=7)
    white = torch.randn(16, 1, 64, 64, generator=torch.Generator().manual_seed(8))
    same_distance = sliced_wasserstein_distance(reference, same)
    other_distance = sliced_wasserstein_distance(reference, white)
    # The difference is in fine texture: clear at full resolution, while at 16 px both sets are
    # smooth noise and only the sampling floor of 16 images remains.
    assert other_distance["level_64px"] > 2 * same_distance["level_64px"]
    assert other_distance["mean"] > same_distance["mean"]


def test_swd_ignores_global_intensity_scale():
    # Each descriptor set is normalised by its own statistics (PGGAN), so an affine intensity
    # change of one whole set leaves the distance unchanged.
    a, b = _smooth_images(8, seed=9), _smooth_images(8, seed=10)
    base = sliced_wasserstein_distance(a, b)["mean"]
    assert sliced_wasserstein_distance(a, 3.0 * b + 0.5)["mean"] == pytest.approx(base, rel=1e-4)


def test_swd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="differ"):
        sliced_wasserstein_distance(torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 16))
    with pytest.raises(ValueError, match="min_resolution"):
        sliced_wasserstein_distance(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


def test_resampled_swd_is_the_same_whatever_the_thread_count():
    """The resamples are scored in threads (one per torch thread); each is computed alone, so one thread and
    two give the same values bit for bit, and the identity resample is the whole-set SWD."""
    from src.metrics.distribution import resampled_sliced_wasserstein, sliced_wasserstein_distance

    g = torch.Generator().manual_seed(3)
    reference = torch.rand(6, 1, 32, 32, generator=g) * 2 - 1
    sets = {"near": reference.flip(-1) * 0.9, "far": torch.rand(6, 1, 32, 32, generator=g) * 2 - 1}
    rows = np.concatenate([np.arange(6)[None], np.random.default_rng(0).integers(0, 6, (9, 6))])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = resampled_sliced_wasserstein(sets, reference, rows, descriptors_per_image=16, n_directions=32)
        torch.set_num_threads(2)
        paired = resampled_sliced_wasserstein(sets, reference, rows, descriptors_per_image=16, n_directions=32)
    finally:
        torch.set_num_threads(threads)
    for name in sets:
        np.testing.assert_array_equal(alone[name], paired[name])
        assert len(np.unique(paired[name])) > 1  # the resamples differ from each other
    whole = sliced_wasserstein_distance(sets["far"], reference, descriptors_per_image=16, n_directions=32)
    assert paired["far"][0] == pytest.approx(whole["mean"], rel=1e-5)
