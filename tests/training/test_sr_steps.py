"""SRGAN step functions: both players learn, flags are restored, D only through the choke point."""

import copy

import pytest
import torch

import src.training.sr_steps as sr_steps
from src.data.degrade import naive_upsample
from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features
from src.models.discriminators import PatchDiscriminator
from src.models.srresnet import SRResNet
from src.training.runtime import make_runtime
from tests.training.helpers import ChokePointGuard, changed, guarded_discriminate, params_of

RUNTIME = make_runtime("cpu", amp=False)


def tiny_setup(gan_loss="nonsaturating", r1_gamma=0.0):
    torch.manual_seed(0)
    g = SRResNet(4, "kspace", channels=8, blocks=1)
    d = ChokePointGuard(PatchDiscriminator(1, 8, 2, spectral_norm=True))
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    features, _ = build_vgg19_features(None)
    perceptual = VGGPerceptualLoss(features, ["relu1_2"])
    settings = sr_steps.SRGanSettings(gan_loss, "color,translation,cutout", 1.0, 1.0, 0.01, r1_gamma, 0.1)
    lr_img = torch.rand(2, 1, 8, 8) * 2 - 1
    hr_img = torch.rand(2, 1, 32, 32) * 2 - 1
    naive_img = naive_upsample(lr_img, 4, "kspace")
    return g, d, g_ema, opt_g, opt_d, perceptual, settings, lr_img, (naive_img, hr_img)


@pytest.mark.parametrize("gan_loss,r1", [("nonsaturating", 0.0), ("lsgan", 0.0), ("hinge", 10.0)])
def test_gan_step_updates_g_and_d_and_restores_flags(monkeypatch, gan_loss, r1):
    monkeypatch.setattr(sr_steps, "discriminate", guarded_discriminate(sr_steps.discriminate))
    g, d, g_ema, opt_g, opt_d, perceptual, settings, lr_img, (naive_img, hr_img) = tiny_setup(gan_loss, r1)
    d.d.conv_in_flag = None
    # A mix of flags: they must come back exactly as they were.
    first_d_param = next(d.parameters())
    first_d_param.requires_grad_(True)
    flags_d = [p.requires_grad for p in d.parameters()]
    flags_g = [p.requires_grad for p in g.parameters()]
    g_before, d_before, ema_before = params_of(g), params_of(d), params_of(g_ema)
    stats = sr_steps.gan_step(g, d, g_ema, opt_g, opt_d, perceptual, lr_img, naive_img, hr_img, settings, 0.0, 0.5, RUNTIME)
    assert changed(g_before, g) and changed(d_before, d) and changed(ema_before, g_ema)
    assert [p.requires_grad for p in d.parameters()] == flags_d
    assert [p.requires_grad for p in g.parameters()] == flags_g
    # real + fake in the D step, fake in the G step; none outside `discriminate`.
    assert d.calls == 3
    assert {"d/adv", "g/adv", "g/pixel", "g/percep", "d/real_sign"} <= set(stats)
    assert ("d/r1" in stats) == (r1 > 0)


def test_zero_weight_terms_are_not_computed(monkeypatch):
    monkeypatch.setattr(sr_steps, "discriminate", guarded_discriminate(sr_steps.discriminate))
    g, d, g_ema, opt_g, opt_d, perceptual, settings, lr_img, (naive_img, hr_img) = tiny_setup()

    class Exploding(torch.nn.Module):
        def forward(self, *args):
            raise AssertionError("perceptual loss computed with weight 0")

    no_percep_no_adv = sr_steps.SRGanSettings("nonsaturating", "", 1.0, 0.0, 0.0, 0.0, 0.0)
    stats = sr_steps.gan_step(g, d, g_ema, opt_g, opt_d, Exploding(), lr_img, naive_img, hr_img, no_percep_no_adv, 0.0, 0.5, RUNTIME)
    assert "g/percep" not in stats and "g/adv" not in stats
    assert d.calls == 2  # the D step only


def test_psnr_step_lowers_l1_on_a_fixed_batch():
    g, _, g_ema, opt_g, _, _, _, lr_img, (naive_img, hr_img) = tiny_setup()
    first = sr_steps.psnr_step(g, g_ema, opt_g, lr_img, naive_img, hr_img, 0.0, RUNTIME)["g/pixel"]
    for _ in range(30):
        last = sr_steps.psnr_step(g, g_ema, opt_g, lr_img, naive_img, hr_img, 0.0, RUNTIME)["g/pixel"]
    assert last < first


def test_ema_warmup_tracks_early_weights():
    assert sr_steps.ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert sr_steps.ema_decay_at(10**6, 0.999) == 0.999
