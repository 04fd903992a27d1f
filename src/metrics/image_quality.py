"""Full-reference image quality: per-image PSNR and SSIM against a ground truth."""

from __future__ import annotations

import torch
from monai.metrics.regression import compute_ssim_and_cs
from torchmetrics.functional.image import peak_signal_noise_ratio

# Wang et al. 2004 (IEEE TIP 13(4)), Sec. III-C: 11x11 circular-symmetric Gaussian window, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: torch.Tensor, target: torch.Tensor, crop_border: int) -> None:
    if pred.ndim != 4 or target.ndim != 4:
        raise ValueError(
            f"expected pred and target of shape (N, C, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = pred.shape[-2:]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")


def _crop(images: torch.Tensor, crop_border: int) -> torch.Tensor:
    if crop_border == 0:
        return images
    return images[..., crop_border:-crop_border, crop_border:-crop_border]


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float, crop_border: int = 0) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio, in dB.

    PSNR = 10 log10(data_range^2 / MSE), the MSE taken over channels and pixels of each image.

    pred, target: (N, C, H, W) float, same shape. In this project the model range is [-1, 1],
        so data_range = 2.0; it is required because medical intensities have no natural peak.
    crop_border: pixels removed from every side before comparing (the SR convention is the
        scale factor, which drops the border where the degradation model is least defined).
    Returns (N,) PSNR in dB; +inf for an image identical to its target.
    """
    _check_pair(pred, target, crop_border)
    return peak_signal_noise_ratio(
        _crop(pred, crop_border),
        _crop(target, crop_border),
        data_range=float(data_range),
        reduction="none",
        dim=(1, 2, 3),
    )


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float, crop_border: int = 0) -> torch.Tensor:
    """Per-image structural similarity (Wang et al. 2004, eq. 13), mean over channels and pixels.

    Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) variances.
    The SSIM map is computed on the valid region only (no padding), which is what
    scikit-image's structural_similarity(gaussian_weights=True, use_sample_covariance=False)
    averages over and matches the MATLAB/BasicSR convention.

    pred, target: (N, C, H, W) float, same shape; after cropping H and W must be >= 11.
    data_range: max - min of the intensity scale (2.0 for [-1, 1]).
    crop_border: pixels removed from every side first.
    Returns (N,) SSIM, 1.0 for identical images.
    """
    _check_pair(pred, target, crop_border)
    pred = _crop(pred, crop_border)
    target = _crop(target, crop_border)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping, got {tuple(pred.shape[-2:])}"
        )
    ssim_map, _ = compute_ssim_and_cs(
        pred,
        target,
        spatial_dims=2,
        kernel_size=(SSIM_WINDOW, SSIM_WINDOW),
        kernel_sigma=(SSIM_SIGMA, SSIM_SIGMA),
        data_range=float(data_range),
        kernel_type="gaussian",
        k1=SSIM_K1,
        k2=SSIM_K2,
    )
    return ssim_map.mean(dim=(1, 2, 3))
