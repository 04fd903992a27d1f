"""Tests for per-image PSNR and SSIM against scikit-image references."""

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from src.metrics.image_quality import psnr, ssim


def _pair(seed: int, shape=(3, 1, 40, 48), noise: float = 0.3):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    pred = (target + noise * torch.randn(shape, generator=generator, dtype=torch.float64)).clamp(-1, 1)
    return pred, target


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_matches_skimage_per_image(crop_border):
    pred, target = _pair(0)
    values = psnr(pred, target, data_range=2.0, crop_border=crop_border)
    assert values.shape == (3,)
    c = crop_border
    for i in range(3):
        crop = (slice(c, pred.shape[-2] - c), slice(c, pred.shape[-1] - c))
        expected = peak_signal_noise_ratio(target[i, 0][crop].numpy(), pred[i, 0][crop].numpy(), data_range=2.0)
        assert values[i].item() == pytest.approx(expected, rel=1e-6)


def test_psnr_hand_value_and_identity():
    target = -torch.ones(2, 1, 16, 16)
    pred = target + 0.1  # MSE = 0.01 -> 10 log10(2^2 / 0.01)
    assert psnr(pred, target, data_range=2.0).tolist() == pytest.approx([10 * math.log10(400.0)] * 2, rel=1e-5)
    assert torch.isinf(psnr(target, target, data_range=2.0)).all()


def test_psnr_crop_ignores_the_border():
    pred, target = _pair(1, noise=0.0)
    pred = pred.clone()
    pred[..., :3, :] = 1.0  # damage only a 3-pixel border strip
    assert torch.isfinite(psnr(pred, target, 2.0, crop_border=2)).all()
    assert torch.isinf(psnr(pred, target, 2.0, crop_border=3)).all()


@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_matches_skimage_gaussian(crop_border):
    pred, target = _pair(2)
    values = ssim(pred, target, data_range=2.0, crop_border=crop_border)
    assert values.shape == (3,)
    c = crop_border
    for i in range(3):
        crop = (slice(c, pred.shape[-2] - c), slice(c, pred.shape[-1] - c))
        expected = structural_similarity(
            target[i, 0][crop].numpy(),
            pred[i, 0][crop].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=2.0,
        )
        assert values[i].item() == pytest.approx(expected, abs=1e-5)


def test_ssim_multichannel_is_channel_mean_as_skimage():
    pred, target = _pair(3, shape=(2, 3, 32, 32))
    values = ssim(pred, target, data_range=2.0)
    for i in range(2):
        expected = structural_similarity(
            target[i].numpy(),
            pred[i].numpy(),
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=2.0,
        )
        assert values[i].item() == pytest.approx(expected, abs=1e-5)


def test_ssim_identity_and_ordering():
    pred, target = _pair(4, noise=0.1)
    worse, _ = _pair(4, noise=0.5)
    assert torch.allclose(ssim(target, target, 2.0), torch.ones(3), atol=1e-6)
    assert (ssim(pred, target, 2.0) > ssim(worse, target, 2.0)).all()


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_errors(metric):
    image = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match="differ"):
        metric(image, torch.zeros(2, 1, 32, 30), data_range=2.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        metric(image[0], image[0], data_range=2.0)
    with pytest.raises(ValueError, match="crop_border"):
        metric(image, image, data_range=2.0, crop_border=16)


def test_ssim_rejects_images_smaller_than_window():
    image = torch.zeros(1, 1, 20, 20)
    with pytest.raises(ValueError, match="11x11"):
        ssim(image, image, data_range=2.0, crop_border=5)
