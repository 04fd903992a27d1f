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


# Paired fidelity on a region (sim-to-real: a translation scored against the real slice of the same
# anatomy, on the brain only). The background is -1 in both images by construction, so whole-image
# figures would be inflated by however much background a slice has.

def _check_mask(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.shape != pred.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the images' {tuple(pred.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be boolean, got {mask.dtype}")
    return mask


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of `values` over `mask` (both (N, C, H, W)); NaN for an image with an empty mask."""
    weights = mask.to(values.dtype)
    return (values * weights).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))


def masked_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error over the pixels where `mask` is true, in the images' units.

    pred, target: (N, C, H, W) float; mask: (N, C, H, W) bool. Returns (N,); NaN where the mask is empty.
    """
    _check_pair(pred, target, 0)
    return _masked_mean((pred.double() - target.double()).abs(), _check_mask(pred, mask))


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR = 10 log10(data_range^2 / MSE) with the MSE over the pixels where `mask` is true.

    pred, target: (N, C, H, W) float; mask: (N, C, H, W) bool; data_range 2.0 for [-1, 1].
    Returns (N,) in dB; +inf for an image equal to its target on the mask, NaN where the mask is empty.
    """
    _check_pair(pred, target, 0)
    mse = _masked_mean((pred.double() - target.double()) ** 2, _check_mask(pred, mask))
    return 10.0 * torch.log10(float(data_range) ** 2 / mse)


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, the window and constants of `ssim`) averaged over the SSIM map's
    pixels where `mask` is true.

    The map covers the valid region only (no padding): it is (H - 10) x (W - 10), centred, so the mask
    is cropped by half the window on every side before averaging. Neighbourhoods of masked pixels may
    reach outside the mask; that is what SSIM at an edge of the brain means.
    pred, target: (N, C, H, W) float, H and W >= 11; mask: (N, C, H, W) bool.
    Returns (N,); NaN where the cropped mask is empty.
    """
    _check_pair(pred, target, 0)
    _check_mask(pred, mask)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
    ssim_map, _ = compute_ssim_and_cs(pred.double(), target.double(), spatial_dims=2,
                                      kernel_size=(SSIM_WINDOW, SSIM_WINDOW), kernel_sigma=(SSIM_SIGMA, SSIM_SIGMA),
                                      data_range=float(data_range), kernel_type="gaussian", k1=SSIM_K1, k2=SSIM_K2)
    half = SSIM_WINDOW // 2
    return _masked_mean(ssim_map, mask[..., half:-half, half:-half])
