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
