"""k-space degradation properties (src/data/degrade.py) on random images."""

import pytest
import torch

from src.data.degrade import degrade, naive_upsample


def _spectrum(images):
    """Centred 2-D spectrum of the physical signal (x + 1) / 2."""
    return torch.fft.fftshift(torch.fft.fft2((images.double() + 1) / 2), dim=(-2, -1))


def _outside_band(h, w, lh, lw, include_mirrored_nyquist):
    """Mask of frequencies outside the kept (lh, lw) band of an (h, w) spectrum."""
    mask = torch.ones(h, w, dtype=torch.bool)
    extra = 1 if include_mirrored_nyquist else 0
    r0, c0 = h // 2 - lh // 2, w // 2 - lw // 2
    mask[r0 : r0 + lh + extra, c0 : c0 + lw + extra] = False
    return mask


def _no_nyquist(lr):
    """LR images whose Nyquist row and column are zero (what a band |k| < N/2 acquisition gives)."""
    spectrum = torch.fft.fft2((lr.double() + 1) / 2)
    spectrum[..., lr.shape[-2] // 2, :] = 0
    spectrum[..., :, lr.shape[-1] // 2] = 0
    return (torch.fft.ifft2(spectrum).real * 2 - 1).float()


@pytest.fixture
def hr():
    return torch.rand(4, 1, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(hr, scale):
    lr = degrade(hr, scale, "kspace")
    assert lr.shape == (4, 1, 32 // scale, 48 // scale)
    assert naive_upsample(lr, scale, "kspace").shape == hr.shape
    assert degrade(hr, scale, "bicubic").shape == lr.shape


@pytest.mark.parametrize("scale", [2, 4])
def test_mean_is_preserved(hr, scale):
    lr = degrade(hr, scale, "kspace")
    naive = naive_upsample(lr, scale, "kspace")
    torch.testing.assert_close(lr.mean(dim=(-2, -1)), hr.mean(dim=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(naive.mean(dim=(-2, -1)), hr.mean(dim=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_zero_filled_reconstruction_is_band_limited(hr, scale):
    """The spectrum of `naive` vanishes outside the kept band |k| <= N / (2 scale)."""
    naive = naive_upsample(degrade(hr, scale, "kspace"), scale, "kspace")
    spectrum = _spectrum(naive).abs()
    outside = _outside_band(32, 48, 32 // scale, 48 // scale, include_mirrored_nyquist=True)
    assert spectrum[..., outside].max() < 1e-3 * spectrum.max()


@pytest.mark.parametrize("scale", [2, 4])
def test_round_trip_without_nyquist(scale):
    lr = _no_nyquist(torch.rand(3, 1, 16, 12, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    torch.testing.assert_close(degrade(naive_upsample(lr, scale, "kspace"), scale, "kspace"), lr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_round_trip_of_any_lr(hr, scale):
    lr = degrade(hr, scale, "kspace")
    torch.testing.assert_close(degrade(naive_upsample(lr, scale, "kspace"), scale, "kspace"), lr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_spectrum_zero_outside_central_block(hr, scale):
    """Stricter than band-limited: nothing leaks to the mirrored Nyquist row either."""
    naive = naive_upsample(degrade(hr, scale, "kspace"), scale, "kspace")
    spectrum = _spectrum(naive).abs()
    outside = _outside_band(32, 48, 32 // scale, 48 // scale, include_mirrored_nyquist=False)
    assert spectrum[..., outside].max() < 1e-3 * spectrum.max()


@pytest.mark.parametrize("degradation", ["kspace", "bicubic"])
@pytest.mark.parametrize("k,flip", [(0, True), (1, False), (2, False), (3, True)])
def test_dihedral_transforms_commute_with_degradation(degradation, k, flip):
    """Needed for flip/rot90 training augmentation and TTA: LR and HR stay aligned."""
    hr = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1

    def transform(x):
        x = torch.rot90(x, k, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if flip else x

    lr = degrade(hr, 4, degradation)
    torch.testing.assert_close(degrade(transform(hr), 4, degradation), transform(lr), atol=1e-5, rtol=0)
    torch.testing.assert_close(naive_upsample(transform(lr), 4, degradation), transform(naive_upsample(lr, 4, degradation)),
                               atol=1e-5, rtol=0)


def test_lr_pixels_are_centred_like_area_decimation():
    """A band-limited ramp: LR pixel i must equal the HR value at i*s + (s-1)/2."""
    h, s = 64, 4
    x = torch.arange(h, dtype=torch.float64)
    ramp = 0.5 * torch.cos(2 * torch.pi * 2 * x / h)  # 2 cycles: well inside the LR band
    hr = ramp[None, None, :, None].expand(1, 1, h, h).float()
    lr = degrade(hr, s, "kspace")[0, 0, :, 0].double()
    expected = 0.5 * torch.cos(2 * torch.pi * 2 * (torch.arange(h // s, dtype=torch.float64) * s + (s - 1) / 2) / h)
    torch.testing.assert_close(lr, expected, atol=1e-4, rtol=0)
