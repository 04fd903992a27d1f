"""Data-consistency projection for k-space degradation (src/data/degrade.py, SRResNet(data_consistency=True))."""

import pytest
import torch

from src.data.degrade import data_consistent, degrade, kspace_band_mask, kspace_highpass, naive_upsample
from src.models.srresnet import SRResNet


def _randomised_generator(scale, seed=0):
    """A DC generator whose residual is far from zero (the 0.1-scaled init would make the test easy)."""
    torch.manual_seed(seed)
    g = SRResNet(scale, "kspace", channels=8, blocks=2, data_consistency=True)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2)
    return g


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_redegraded_output_equals_the_lr_input(scale):
    hr = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lr = degrade(hr, scale, "kspace")
    g = _randomised_generator(scale)
    sr = g(lr)
    assert (sr - naive_upsample(lr, scale, "kspace")).abs().max() > 0.05   # the network did change the image
    assert torch.allclose(degrade(sr, scale, "kspace"), lr, atol=2e-6, rtol=0)


def test_projection_is_exact_under_bf16_autocast():
    """The projection runs in float32 even when the network runs in bf16."""
    hr = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    lr = degrade(hr, 4, "kspace")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sr = _randomised_generator(4)(lr)
    assert sr.dtype == torch.float32
    assert torch.allclose(degrade(sr, 4, "kspace"), lr, atol=2e-6, rtol=0)


def test_highpass_removes_exactly_the_measured_band():
    images = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    spectrum = torch.fft.fft2(kspace_highpass(images, 4).double())
    mask = kspace_band_mask(32, 32, 4)
    assert mask.sum() == 7 * 7   # the 8x8 central block without its Nyquist row and column
    assert spectrum[..., mask].abs().max() < 1e-4
    assert torch.allclose(spectrum[..., ~mask], torch.fft.fft2(images.double())[..., ~mask], atol=1e-4)


def test_projection_keeps_a_consistent_image_and_is_idempotent():
    hr = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    naive = naive_upsample(degrade(hr, 4, "kspace"), 4, "kspace")
    assert torch.allclose(data_consistent(naive, hr - naive, 4), hr, atol=1e-5)   # HR is consistent with its LR
    once = data_consistent(naive, hr, 4)
    assert torch.allclose(data_consistent(naive, once - naive, 4), once, atol=1e-5)


def test_data_consistency_is_refused_for_bicubic():
    with pytest.raises(ValueError, match="bicubic"):
        SRResNet(4, "bicubic", channels=8, blocks=1, data_consistency=True)


def test_a_partial_band_keeps_only_the_low_part_of_the_measurement_exactly():
    mask_half = kspace_band_mask(32, 32, 4, band=0.5)
    assert mask_half.sum() == 3 * 3            # the central 4x4 block without its Nyquist row and column
    assert not (mask_half & ~kspace_band_mask(32, 32, 4)).any()   # inside the measured band
    hr = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    naive = naive_upsample(degrade(hr, 4, "kspace"), 4, "kspace")
    residual = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    out = data_consistent(naive, residual, 4, band=0.5)
    spectrum, measured = torch.fft.fft2(out.double()), torch.fft.fft2(naive.double())
    assert torch.allclose(spectrum[..., mask_half], measured[..., mask_half], atol=1e-4)   # kept exactly
    rest = kspace_band_mask(32, 32, 4) & ~mask_half
    assert (spectrum[..., rest] - measured[..., rest]).abs().max() > 1   # the network may correct the rest
    with pytest.raises(ValueError, match="band"):
        kspace_band_mask(32, 32, 4, band=0.0)
    with pytest.raises(ValueError, match="keeps no frequency"):
        kspace_band_mask(32, 32, 4, band=0.1)


def test_generator_applies_its_band():
    torch.manual_seed(0)
    full = SRResNet(4, "kspace", channels=8, blocks=1, data_consistency=True)
    half = SRResNet(4, "kspace", channels=8, blocks=1, data_consistency=True, data_consistency_band=0.5)
    half.load_state_dict(full.state_dict())
    with torch.no_grad():
        for p in full.parameters():
            p.normal_(0, 0.2)
        half.load_state_dict(full.state_dict())
    lr = degrade(torch.rand(1, 1, 32, 32) * 2 - 1, 4, "kspace")
    assert torch.allclose(degrade(full(lr), 4, "kspace"), lr, atol=2e-6)
    assert not torch.allclose(degrade(half(lr), 4, "kspace"), lr, atol=1e-3)
