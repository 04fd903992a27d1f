"""The high-pass discriminator front end (src/models/highpass.py)."""

import torch

from src.models.discriminators import PatchDiscriminator
from src.models.highpass import HighPassDiscriminator, gaussian_highpass


def test_highpass_removes_constants_and_smooth_ramps_keeps_detail():
    flat = torch.full((1, 1, 32, 32), 0.3)
    assert gaussian_highpass(flat, 1.0).abs().max() < 1e-6
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    detail = gaussian_highpass(checker.view(1, 1, 32, 32), 1.0)
    assert detail.abs().mean() > 0.5   # the finest pattern passes almost unchanged


def test_wrapped_d_scores_only_detail_and_is_differentiable():
    torch.manual_seed(0)
    d = HighPassDiscriminator(PatchDiscriminator(1, 8, 2, spectral_norm=True), sigma=1.0).eval()  # no power iteration
    images = torch.rand(2, 1, 32, 32, requires_grad=True)
    shifted = images.detach() + 0.5   # a brightness change is not detail
    assert torch.allclose(d(images), d(shifted), atol=1e-5)
    d(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


class Recorder(torch.nn.Module):
    """Stands in for the PatchGAN: returns what the front end hands it."""

    def forward(self, x):
        return x


def test_compressed_front_end_is_linear_for_faint_detail_and_logarithmic_for_strong():
    d_linear = HighPassDiscriminator(Recorder(), sigma=1.0, gain=4.0)
    d_compressed = HighPassDiscriminator(Recorder(), sigma=1.0, compress=0.01)
    torch.manual_seed(0)
    faint = -1 + 0.002 * torch.rand(1, 1, 32, 32)          # a few thousandths above HR's flat background
    strong = torch.rand(1, 1, 32, 32) * 2 - 1               # tissue-like detail
    # faint detail: asinh(x / 0.01) ~ x / 0.01, 25x what the linear front end (gain 4) passes
    ratio = d_compressed(faint).abs().mean() / d_linear(faint).abs().mean()
    assert 24 < ratio < 25.01
    # strong detail is compressed: far less than 25x
    assert d_compressed(strong).abs().mean() / d_linear(strong).abs().mean() < 10
    # the sign and the ordering of detail are kept: a monotone map of the same high-pass
    hp = gaussian_highpass(strong, 1.0)
    assert torch.equal(torch.sign(d_compressed(strong)), torch.sign(hp))
    assert torch.equal(d_compressed(strong).flatten().argsort(), hp.flatten().argsort())


def test_compressed_front_end_lets_g_feel_faint_detail():
    faint = (-1 + 0.002 * torch.rand(1, 1, 32, 32)).requires_grad_()
    HighPassDiscriminator(Recorder(), sigma=1.0, compress=0.01)(faint).square().sum().backward()
    compressed = faint.grad.abs().sum()
    faint.grad = None
    HighPassDiscriminator(Recorder(), sigma=1.0)(faint).square().sum().backward()
    assert compressed > 100 * faint.grad.abs().sum()   # (25)^2 in the squared read-out, less the asinh's bend


def test_front_end_refuses_a_negative_compression():
    import pytest
    with pytest.raises(ValueError, match="compress"):
        HighPassDiscriminator(Recorder(), sigma=1.0, compress=-0.01)
