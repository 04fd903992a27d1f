"""Tests for dihedral test-time augmentation and Spearman correlation of maps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from src.metrics.uncertainty import dihedral_tta, spearman_correlation

SYMMETRIC_KERNEL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).reshape(1, 1, 3, 3) / 16
ASYMMETRIC_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 1, 3, 3)


def _images(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_tta_of_pointwise_model_has_zero_std_and_equals_the_model():
    images = _images()
    mean, std = dihedral_tta(torch.tanh, images)
    assert mean.shape == std.shape == images.shape
    assert torch.allclose(mean, torch.tanh(images), atol=1e-6)
    assert std.abs().max() < 1e-6


def test_tta_of_symmetric_conv_is_equivariant():
    images = _images(1)
    model = lambda x: F.conv2d(x, SYMMETRIC_KERNEL, padding=1)  # noqa: E731
    mean, std = dihedral_tta(model, images)
    assert std.abs().max() < 1e-5
    assert torch.allclose(mean, model(images), atol=1e-5)


def test_tta_of_asymmetric_conv_has_positive_std():
    images = _images(2)
    # Shifts the image by one pixel: each rotation/flip shifts in a different direction.
    _, std = dihedral_tta(lambda x: F.conv2d(x, ASYMMETRIC_KERNEL, padding=1), images)
    assert std.mean() > 0.1


def test_tta_handles_super_resolution_outputs():
    images = _images(3, size=8)

    def upsample(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")

    mean, std = dihedral_tta(upsample, images)
    assert mean.shape == (2, 1, 16, 16)
    assert std.abs().max() < 1e-6
    assert torch.allclose(mean, upsample(images))
    _, std_shifted = dihedral_tta(lambda x: F.conv2d(upsample(x), ASYMMETRIC_KERNEL, padding=1), images)
    assert std_shifted.mean() > 0.05


def test_tta_rejects_non_square_images():
    with pytest.raises(ValueError, match="square"):
        dihedral_tta(torch.tanh, torch.zeros(1, 1, 8, 6))


def test_spearman_is_one_for_monotone_transform_and_minus_one_reversed():
    values = torch.randn(3, 1, 20, 20, generator=torch.Generator().manual_seed(4))
    assert spearman_correlation(values, torch.exp(values)) == pytest.approx(1.0)
    assert spearman_correlation(values, -(values**3)) == pytest.approx(-1.0)


def test_spearman_matches_scipy_and_subsamples_deterministically():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(40, 50))
    b = a + rng.normal(size=(40, 50))
    assert spearman_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)
    subsampled = spearman_correlation(a, b, max_pixels=500, seed=1)
    assert subsampled == spearman_correlation(a, b, max_pixels=500, seed=1)
    assert subsampled != spearman_correlation(a, b, max_pixels=500, seed=2)
    assert subsampled == pytest.approx(spearman_correlation(a, b), abs=0.15)
    assert spearman_correlation(a, np.exp(a), max_pixels=500) == pytest.approx(1.0)


def test_spearman_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        spearman_correlation(np.zeros((4, 4)), np.zeros(16))
