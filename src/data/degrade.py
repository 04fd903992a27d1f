"""Low-resolution simulation and the naive upsampling that matches it.

Images are tensors (N, C, H, W) in the model range [-1, 1] with background at -1.
The k-space operations work on the physical intensity (x + 1) / 2, so that the
background is 0 signal, as it is in a magnitude MR image.

`kspace` degradation is what a lower acquisition matrix does: keep the central
(H/scale, W/scale) block of the 2-D Fourier transform. Its matching naive
reconstruction is zero-filling that block back to (H, W) (sinc interpolation, with
its Gibbs ringing). `bicubic` is the natural-image convention (antialiased bicubic
down, bicubic up). Evaluating a model against the baseline that matches the
degradation is what keeps baselines honest (see shared notes: zero-fill vs bicubic
up of k-space LR differ by >3 dB).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEGRADATIONS = ("kspace", "bicubic")


def _check(images: torch.Tensor, scale: int) -> None:
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")


def _centre_slice(full: int, kept: int) -> slice:
    start = full // 2 - kept // 2
    return slice(start, start + kept)


def _half_pixel_phase(lh: int, lw: int, h: int, w: int, scale: int, sign: float) -> torch.Tensor:
    """Linear phase that shifts a band-limited image by sign * (scale - 1) / 2 HR pixels per axis.

    On the centred (fftshift-ed) (lh, lw) block of an (h, w) spectrum. Multiplying by
    exp(+2 pi i k d / N) turns f(x) into f(x + d).
    """
    shift = (scale - 1) / 2
    ky = torch.arange(lh, dtype=torch.float64) - lh // 2
    kx = torch.arange(lw, dtype=torch.float64) - lw // 2
    phase = 2 * torch.pi * sign * shift * (ky[:, None] / h + kx[None, :] / w)
    return torch.polar(torch.ones_like(phase), phase)


def kspace_downsample(hr_img: torch.Tensor, scale: int) -> torch.Tensor:
    """Truncate k-space to the central (H/scale, W/scale) block.

    hr_img: (N, C, H, W) in [-1, 1], H and W divisible by `scale`.
    Returns (N, C, H/scale, W/scale) in the same intensity scale; the image mean is
    preserved exactly (the DC coefficient is kept and the inverse FFT is rescaled by
    the ratio of matrix sizes). The LR Nyquist row/column (frequency -size/2 of an
    even-sized block) is zeroed: it has no +size/2 partner inside the block, so
    keeping it would make the band non-Hermitian, the LR image complex, and
    zero-filling not invertible. With it zeroed the block is Hermitian, the inverse
    FFT is real (up to rounding) and `kspace_downsample(kspace_zero_fill_upsample(x))`
    returns x. LR pixel i is centred on HR position i*scale + (scale-1)/2 (a half-pixel
    phase shift in k-space), the grid of area and bicubic decimation: flips and 90-degree
    rotations then commute with the degradation, so dihedral training augmentation and
    test-time augmentation keep LR and HR aligned (with the FFT's grid anchored at pixel 0
    a flip would misalign them by scale-1 HR pixels). Output may overshoot [-1, 1] (Gibbs).
    """
    _check(hr_img, scale)
    n, c, h, w = hr_img.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by scale {scale}")
    lh, lw = h // scale, w // scale
    signal = (hr_img.float() + 1.0) / 2.0
    spectrum = torch.fft.fftshift(torch.fft.fft2(signal), dim=(-2, -1))
    kept = spectrum[..., _centre_slice(h, lh), _centre_slice(w, lw)].clone()
    if lh % 2 == 0:
        kept[..., 0, :] = 0
    if lw % 2 == 0:
        kept[..., :, 0] = 0
    kept = kept * _half_pixel_phase(lh, lw, h, w, scale, +1.0).to(kept.device, kept.dtype)
    low = torch.fft.ifft2(torch.fft.ifftshift(kept, dim=(-2, -1))).real
    low = low * (lh * lw) / (h * w)
    return (low * 2.0 - 1.0).to(hr_img.dtype)


def kspace_zero_fill_upsample(lr_img: torch.Tensor, scale: int) -> torch.Tensor:
    """Zero-filled reconstruction: pad the LR spectrum to (H*scale, W*scale).

    The inverse of `kspace_downsample` on the kept band: applying
    `kspace_downsample(kspace_zero_fill_upsample(x, s), s)` returns x.
    """
    _check(lr_img, scale)
    n, c, lh, lw = lr_img.shape
    h, w = lh * scale, lw * scale
    signal = (lr_img.float() + 1.0) / 2.0
    spectrum = torch.fft.fftshift(torch.fft.fft2(signal), dim=(-2, -1))
    padded = spectrum.new_zeros((n, c, h, w))
    padded[..., _centre_slice(h, lh), _centre_slice(w, lw)] = spectrum * _half_pixel_phase(
        lh, lw, h, w, scale, -1.0).to(spectrum.device, spectrum.dtype)
    high = torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1))).real
    high = high * (h * w) / (lh * lw)
    return (high * 2.0 - 1.0).to(lr_img.dtype)


def kspace_band_mask(h: int, w: int, scale: int, band: float = 1.0) -> torch.Tensor:
    """(h, w) bool mask, in fft2's (unshifted) layout, of the HR frequencies that `kspace_downsample` keeps.

    The central (h/scale, w/scale) block without its first row/column when even (the LR
    Nyquist lines, which `kspace_downsample` zeroes): exactly the band that
    `kspace_zero_fill_upsample(kspace_downsample(x))` passes through. band < 1: the central
    `band` of that block per axis only (the measured frequencies below band x the cut-off).
    """
    if not 0 < band <= 1:
        raise ValueError(f"band must be in (0, 1], got {band}")
    lh, lw = int(h // scale * band), int(w // scale * band)
    if min(lh, lw) < 1:
        raise ValueError(f"band {band} keeps no frequency of a {h}x{w} image at scale {scale}")
    mask = torch.zeros(h, w, dtype=torch.bool)
    rows, cols = _centre_slice(h, lh), _centre_slice(w, lw)
    mask[rows, cols] = True
    if lh % 2 == 0:
        mask[rows.start, cols] = False
    if lw % 2 == 0:
        mask[rows, cols.start] = False
    return torch.fft.ifftshift(mask, dim=(-2, -1))


def kspace_highpass(images: torch.Tensor, scale: int, band: float = 1.0) -> torch.Tensor:
    """images (N, C, H, W) with the measured k-space band removed (float32): what a k-space LR acquisition cannot see.

    `kspace_downsample(x + kspace_highpass(r, s), s)` equals `kspace_downsample(x, s)` for any
    r (up to float rounding): adding a high-passed residual keeps an output data-consistent.
    band < 1 removes only the measured frequencies below band x the cut-off (`kspace_band_mask`).
    """
    _check(images, scale)
    h, w = images.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by scale {scale}")
    spectrum = torch.fft.fft2(images.float())
    spectrum = spectrum.masked_fill(kspace_band_mask(h, w, scale, band).to(images.device), 0)
    return torch.fft.ifft2(spectrum).real


def data_consistent(naive_img: torch.Tensor, residual: torch.Tensor, scale: int, band: float = 1.0) -> torch.Tensor:
    """Data-consistency projection for k-space degradation: naive_img + the residual's unmeasured frequencies.

    naive_img: the zero-filled reconstruction (N, C, H, W) of the LR acquisition, whose
    spectrum is exactly the measured band; residual: a network's correction, same shape.
    The output's measured band is replaced by the measurement (the low frequencies of
    naive_img + residual become those of naive_img), so re-degrading the output returns the
    LR input to float precision on whole images. On training crops the band is that of the
    crop (periodic boundary): the same cut-off frequency, approximate only at crop edges.
    band < 1: only the measured frequencies below band x the cut-off are kept exactly; the
    network may correct the rest of the measured band, where truncation's Gibbs ringing lives.
    Computed in float32.
    """
    if naive_img.shape != residual.shape:
        raise ValueError(f"naive_img {tuple(naive_img.shape)} and residual {tuple(residual.shape)} differ in shape")
    return naive_img.float() + kspace_highpass(residual, scale, band)


def bicubic_downsample(hr_img: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic decimation (the MATLAB `imresize` convention)."""
    _check(hr_img, scale)
    h, w = hr_img.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by scale {scale}")
    return F.interpolate(hr_img, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)


def bicubic_upsample(lr_img: torch.Tensor, scale: int) -> torch.Tensor:
    _check(lr_img, scale)
    h, w = lr_img.shape[-2:]
    return F.interpolate(lr_img, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


def degrade(hr_img: torch.Tensor, scale: int, degradation: str) -> torch.Tensor:
    """HR (N, C, H, W) -> LR (N, C, H/scale, W/scale) by the named degradation."""
    if degradation == "kspace":
        return kspace_downsample(hr_img, scale)
    if degradation == "bicubic":
        return bicubic_downsample(hr_img, scale)
    raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")


def naive_upsample(lr_img: torch.Tensor, scale: int, degradation: str) -> torch.Tensor:
    """The baseline reconstruction that matches `degradation` (zero-fill or bicubic)."""
    if degradation == "kspace":
        return kspace_zero_fill_upsample(lr_img, scale)
    if degradation == "bicubic":
        return bicubic_upsample(lr_img, scale)
    raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
