"""Set distances on bootstrap resamples: equal to the direct computation, and cheap to repeat."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.image.kid import poly_mmd

from src.metrics.bootstrap import resample_indices
from src.metrics.distribution import (frechet_distance, kernel_distance, resampled_frechet_distances,
                                      resampled_kernel_distances, resampled_sliced_wasserstein,
                                      sliced_wasserstein_distance)


def paired_features(n: int = 14, dim: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return a, 0.6 * a + torch.randn(n, dim, generator=generator, dtype=torch.float64) + 0.3


def smooth_images(n: int, seed: int, channels: int = 1, size: int = 32) -> torch.Tensor:
    noise = torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(F.pad(noise, (1, 1, 1, 1), mode="circular"), 3, stride=1)


def test_frechet_on_resamples_equals_frechet_distance_of_the_resampled_rows():
    a, b = paired_features()
    indices = resample_indices(14, 5, seed=1)
    identity = np.arange(14)[None]
    # D = 64 > n: S_a S_b is singular, and the square roots of its round-off eigenvalues (about
    # 1e-14 each) put frechet_distance ~1e-7 off; the n x n route has no such eigenvalues.
    assert resampled_frechet_distances(a, b, identity)[0] == pytest.approx(frechet_distance(a, b), rel=1e-6)
    for row, value in zip(indices, resampled_frechet_distances(a, b, indices)):
        assert value == pytest.approx(frechet_distance(a[row], b[row]), rel=1e-6)


def reference_kid(a: torch.Tensor, b: torch.Tensor, row: np.ndarray) -> float:
    """The resample as a list of pairs, by brute force: within a set, pairs of copies of one slice are left
    out; across sets, every pair counts except copies of one slice meeting a copy other than their own partner."""
    dim = a.shape[1]
    k = lambda x, y: float((x @ y / dim + 1.0) ** 3)  # noqa: E731
    m = len(row)
    within = [(s, t) for s in range(m) for t in range(m) if row[s] != row[t]]
    cross = [(s, t) for s in range(m) for t in range(m) if s == t or row[s] != row[t]]
    return (sum(k(a[row[s]], a[row[t]]) + k(b[row[s]], b[row[t]]) for s, t in within) / len(within)
            - 2 * sum(k(a[row[s]], b[row[t]]) for s, t in cross) / len(cross))


def test_kernel_distance_on_resamples_matches_a_brute_force_reference():
    a, b = paired_features(n=8)
    identity = np.arange(8)[None]
    whole = float(poly_mmd(a, b, degree=3, gamma=None, coef=1.0))
    assert resampled_kernel_distances(a, b, identity)[0] == pytest.approx(whole, rel=1e-10)
    assert resampled_kernel_distances(a, b, identity)[0] == pytest.approx(kernel_distance(a, b, 3, 32, seed=0)[0])
    indices = resample_indices(8, 4, seed=2)
    for row, value in zip(indices, resampled_kernel_distances(a, b, indices)):
        assert value == pytest.approx(reference_kid(a, b, row), rel=1e-10)


def test_kernel_distance_on_resamples_is_not_pulled_up_by_duplicates():
    # Two samples of one distribution: the whole-set value scatters around 0 and so must the resamples;
    # a plug-in with k(x, x) terms for duplicates would sit clearly above 0.
    generator = torch.Generator().manual_seed(3)
    a, b = (torch.randn(14, 32, generator=generator, dtype=torch.float64) for _ in range(2))
    resampled = resampled_kernel_distances(a, b, resample_indices(14, 2000, seed=4))
    whole = resampled_kernel_distances(a, b, np.arange(14)[None])[0]
    assert abs(np.median(resampled) - whole) < 0.25 * resampled.std()


@pytest.mark.parametrize("channels", [1, 3])
def test_sliced_wasserstein_on_the_identity_resample_reproduces_the_direct_value(channels):
    reference, other = smooth_images(6, seed=5, channels=channels), smooth_images(6, seed=6, channels=channels) * 1.5
    identity = np.arange(6)[None]
    resampled = resampled_sliced_wasserstein({"other": other, "same": reference.clone()}, reference, identity,
                                             descriptors_per_image=16, n_directions=200, seed=7)
    direct = sliced_wasserstein_distance(other, reference, descriptors_per_image=16, n_directions=200, seed=7)
    assert resampled["other"][0] == pytest.approx(direct["mean"], rel=1e-5)
    assert resampled["same"][0] == pytest.approx(0.0, abs=1e-6)


def test_sliced_wasserstein_resamples_are_permutation_invariant_and_need_aligned_sets():
    reference, other = smooth_images(6, seed=8), smooth_images(6, seed=9)
    rows = np.array([np.arange(6), np.arange(6)[::-1], [0, 0, 1, 1, 2, 2]])
    values = resampled_sliced_wasserstein({"other": other}, reference, rows, descriptors_per_image=16,
                                          n_directions=64, seed=1)["other"]
    assert values[0] == pytest.approx(values[1], rel=1e-5)  # a resample is a multiset of slices
    assert values[2] != pytest.approx(values[0], rel=1e-3)
    with pytest.raises(ValueError, match="reference has 6"):
        resampled_sliced_wasserstein({"other": other[:5]}, reference, rows[:, :5])
    with pytest.raises(ValueError, match="shape"):
        resampled_frechet_distances(*paired_features(n=6), rows[:, :5])
