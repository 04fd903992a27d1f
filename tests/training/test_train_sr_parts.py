"""The SR stages' small parts: the PSNR-phase schedule, the data-consistency switch and the saved model's meta."""

import logging
import math

import pytest
import torch

from src.data.degrade import degrade
from src.models.srresnet import SRResNet
from src.train_sr_psnr import warmup_cosine
from src.training.checkpoint import save_weights
from src.training.sr_models import load_sr_generator
from src.training.sr_setup import uses_data_consistency


def test_warmup_then_cosine_to_the_floor():
    factor = warmup_cosine(warmup_steps=10, total_steps=110, floor=0.05)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(110) == pytest.approx(0.05) and factor(500) == pytest.approx(0.05)
    no_warmup = warmup_cosine(warmup_steps=0, total_steps=100)
    assert no_warmup(0) == pytest.approx(1.0)


def test_data_consistency_is_skipped_loudly_for_bicubic(caplog):
    with caplog.at_level(logging.WARNING):
        assert uses_data_consistency(True, "bicubic") is False
    assert "data_consistency is ignored" in caplog.text
    assert uses_data_consistency(True, "kspace") is True
    assert uses_data_consistency(False, "kspace") is False


def test_loader_rebuilds_the_projection_from_the_meta(tmp_path):
    torch.manual_seed(0)
    g = SRResNet(4, "kspace", channels=8, blocks=1, data_consistency=True)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2)
    meta = {"scale": 4, "degradation": "kspace", "channels": 8, "blocks": 1, "data_consistency": True,
            "clamp_output": False, "data_consistency_band": 1.0}
    save_weights(tmp_path / "g.pt", g, meta)
    loaded = load_sr_generator(tmp_path / "g.pt", 4, "kspace", expected=None)
    lr = degrade(torch.rand(2, 1, 32, 32) * 2 - 1, 4, "kspace")
    assert loaded.data_consistency
    assert torch.allclose(degrade(loaded(lr), 4, "kspace"), lr, atol=2e-6, rtol=0)

    old = {k: v for k, v in meta.items() if k != "data_consistency"}   # written before the option existed
    save_weights(tmp_path / "old.pt", g, old)
    with pytest.raises(ValueError, match="re-run train_sr_psnr / train_sr"):
        load_sr_generator(tmp_path / "old.pt", 4, "kspace", expected=None)


def test_clamped_output_stays_in_the_data_range_and_passes_no_gradient_beyond_it(tmp_path):
    torch.manual_seed(0)
    g = SRResNet(4, "kspace", channels=8, blocks=1, clamp_output=True)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.5)   # a residual large enough to overshoot [-1, 1]
    lr = (torch.rand(2, 1, 16, 16) * 2 - 1).requires_grad_()
    unclamped = SRResNet(4, "kspace", channels=8, blocks=1)
    unclamped.load_state_dict(g.state_dict())
    raw, out = unclamped(lr), g(lr)
    outside = raw.abs() > 1
    assert outside.any() and (~outside).any()
    assert out.abs().max() <= 1 and torch.equal(out[~outside], raw[~outside])
    # HR's background is the floor: a pixel G pushes below -1 reads exactly -1, and no loss on it pulls G back
    residual_grad = torch.autograd.grad(g(lr)[outside].sum(), g.conv_last.bias)[0]
    assert residual_grad.abs().max() == 0
    assert torch.autograd.grad(g(lr)[~outside].sum(), g.conv_last.bias)[0].abs().max() > 0

    meta = {"scale": 4, "degradation": "kspace", "channels": 8, "blocks": 1, "data_consistency": False,
            "clamp_output": True, "data_consistency_band": 1.0}
    save_weights(tmp_path / "g.pt", g, meta)
    loaded = load_sr_generator(tmp_path / "g.pt", 4, "kspace", expected=None)
    assert loaded.clamp_output and torch.equal(loaded(lr.detach()), out.detach())
    old = {k: v for k, v in meta.items() if k != "clamp_output"}   # written before the option existed
    save_weights(tmp_path / "old.pt", g, old)
    with pytest.raises(ValueError, match="re-run train_sr_psnr / train_sr"):
        load_sr_generator(tmp_path / "old.pt", 4, "kspace", expected=None)
