"""Tests for the adversarial losses and the R1 penalty: behaviour and hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.losses.adversarial import (
    D_LOSSES,
    G_LOSSES,
    RELATIVISTIC_G_LOSSES,
    d_loss_hinge,
    d_loss_lsgan,
    d_loss_nonsaturating,
    d_loss_relativistic,
    g_loss_hinge,
    g_loss_lsgan,
    g_loss_nonsaturating,
    g_loss_relativistic,
    r1_penalty,
)

KINDS = ["nonsaturating", "lsgan", "hinge"]


def test_dicts_hold_the_functions():
    assert D_LOSSES == {"nonsaturating": d_loss_nonsaturating, "lsgan": d_loss_lsgan, "hinge": d_loss_hinge,
                        "relativistic": d_loss_relativistic}
    assert G_LOSSES == {"nonsaturating": g_loss_nonsaturating, "lsgan": g_loss_lsgan, "hinge": g_loss_hinge}
    assert RELATIVISTIC_G_LOSSES == {"relativistic": g_loss_relativistic}


@pytest.mark.parametrize("kind", [*KINDS, "relativistic"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_d_loss_lower_when_d_is_right(kind, smoothing):
    high, low = torch.full((4, 1, 6, 6), 1.0), torch.full((4, 1, 6, 6), -1.0)
    right = D_LOSSES[kind](high, low, label_smoothing=smoothing)
    wrong = D_LOSSES[kind](low, high, label_smoothing=smoothing)
    assert right.ndim == 0 and right < wrong


@pytest.mark.parametrize("kind", KINDS)
def test_g_loss_decreases_as_fake_logits_rise(kind):
    values = [G_LOSSES[kind](torch.full((3, 1, 4, 4), v)).item() for v in (-2.0, -0.5, 0.5, 0.9)]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("kind", KINDS)
def test_losses_pass_gradients(kind):
    # Logits on both sides of every margin (hinge's +-1 included): with unseeded randn, all 18 fake logits above
    # -1 (p = 4 %) made the hinge terms' fake gradients cancel exactly, and the test failed at random.
    real = torch.linspace(-2.0, 2.0, 18).reshape(2, 1, 3, 3).requires_grad_()
    fake = torch.linspace(-2.0, 2.0, 18).flip(0).reshape(2, 1, 3, 3).requires_grad_()
    (D_LOSSES[kind](real, fake) + G_LOSSES[kind](fake)).backward()
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0


def test_known_values():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert d_loss_nonsaturating(real, fake).item() == pytest.approx(
        (softplus(-0.0) + softplus(-2.0)) / 2 + (softplus(0.0) + softplus(-1.0)) / 2
    )
    assert g_loss_nonsaturating(fake).item() == pytest.approx((softplus(0.0) + softplus(1.0)) / 2)
    assert d_loss_lsgan(real, fake).item() == pytest.approx((1 + 1) / 2 + (0 + 1) / 2)
    assert d_loss_lsgan(real, fake, label_smoothing=0.1).item() == pytest.approx((0.81 + 1.21) / 2 + 0.5)
    assert g_loss_lsgan(fake).item() == pytest.approx((1 + 4) / 2)
    assert d_loss_hinge(real, fake).item() == pytest.approx((1 + 0) / 2 + (1 + 0) / 2)
    assert d_loss_hinge(real, fake, label_smoothing=0.5).item() == pytest.approx(0.5 / 2 + 0.5)
    assert g_loss_hinge(fake).item() == pytest.approx(0.5)


def test_relativistic_known_values():
    # Reals [0, 2] (mean 1) against fakes [0, -1] (mean -0.5): relative logits [0.5, 2.5] and [-1, -2].
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert d_loss_relativistic(real, fake).item() == pytest.approx(
        (softplus(-0.5) + softplus(-2.5)) / 2 + (softplus(-1.0) + softplus(-2.0)) / 2)
    assert g_loss_relativistic(fake, real).item() == pytest.approx(
        0.5 * ((softplus(0.5) + softplus(2.5)) / 2 + (softplus(1.0) + softplus(2.0)) / 2))
    # Equal logits: D and G at chance (2 ln 2 summed for D; ln 2 averaged for G, ESRGAN's scale).
    zeros = torch.zeros(3, 1, 2, 2)
    assert d_loss_relativistic(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert g_loss_relativistic(zeros, zeros).item() == pytest.approx(math.log(2))


def test_relativistic_losses_see_only_differences_between_real_and_fake():
    # What makes the loss relativistic: a shift shared by every logit changes nothing, where the absolute
    # non-saturating loss moves.
    real = torch.linspace(-1.0, 2.0, 8).reshape(2, 1, 2, 2)
    fake = torch.linspace(-2.0, 0.5, 8).reshape(2, 1, 2, 2)
    for shift in (-3.0, 5.0):
        assert d_loss_relativistic(real + shift, fake + shift).item() == pytest.approx(
            d_loss_relativistic(real, fake).item())
        assert g_loss_relativistic(fake + shift, real + shift).item() == pytest.approx(
            g_loss_relativistic(fake, real).item())
    assert d_loss_nonsaturating(real + 5.0, fake + 5.0).item() != pytest.approx(d_loss_nonsaturating(real, fake).item())


def test_relativistic_g_loss_falls_as_fakes_overtake_the_reals():
    real = torch.full((3, 1, 4, 4), 0.5)
    values = [g_loss_relativistic(torch.full((3, 1, 4, 4), v), real).item() for v in (-2.0, -0.5, 0.5, 0.9)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_relativistic_g_loss_reaches_the_fakes_through_the_real_term():
    # ESRGAN: with the real logits detached, G still learns from the real term, through the fakes' mean; a G loss
    # of the fake term alone would have another gradient.
    real = torch.tensor([0.0, 2.0])
    fake = torch.tensor([0.0, -1.0], requires_grad=True)
    (whole,) = torch.autograd.grad(g_loss_relativistic(fake, real), fake)
    fake_term = 0.5 * F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones(2))
    (fake_only,) = torch.autograd.grad(fake_term, fake)
    assert not torch.allclose(whole, fake_only)


def test_label_smoothing_raises_nonsaturating_minimum():
    logits = torch.linspace(-10, 10, 2001)
    fake = torch.full((1,), -30.0)

    def minimum(s):
        return min(d_loss_nonsaturating(torch.tensor([x]), fake, label_smoothing=s).item() for x in logits)

    assert minimum(0.0) < 1e-4
    # Minimum of BCE against target 0.9 is the Bernoulli(0.9) entropy.
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert minimum(0.1) == pytest.approx(entropy, abs=1e-4)


def test_label_smoothing_range_checked():
    with pytest.raises(ValueError):
        d_loss_nonsaturating(torch.zeros(1), torch.zeros(1), label_smoothing=1.0)


def test_r1_zero_for_d_ignoring_input():
    images = torch.randn(3, 1, 4, 4, requires_grad=True)
    bias = nn.Parameter(torch.tensor(0.7))
    assert r1_penalty(bias + 0.0 * images.sum(dim=(1, 2, 3)), images).item() == 0.0
    assert r1_penalty(bias.expand(3), images).item() == 0.0


def test_r1_linear_d_hand_computed_and_differentiable():
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(1, 2, 3, 3))
    images = torch.randn(5, 2, 3, 3, requires_grad=True)
    logits = (images * weight).sum(dim=(1, 2, 3))
    penalty = r1_penalty(logits, images)
    # grad_x D = w for every image, so E ||grad||^2 = ||w||^2.
    assert penalty.item() == pytest.approx(weight.square().sum().item(), rel=1e-6)
    # create_graph=True: the penalty trains D; d||w||^2/dw = 2w.
    penalty.backward()
    assert torch.allclose(weight.grad, 2 * weight.detach())


def test_r1_patch_logits_sum_per_image():
    images = torch.randn(2, 1, 4, 4, requires_grad=True)
    logits = 3.0 * images[:, :, :2, :2]  # a 2x2 "patch map" reading 4 pixels with slope 3
    assert r1_penalty(logits, images).item() == pytest.approx(4 * 9.0)


def test_r1_requires_grad_on_images():
    images = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(images.sum(dim=(1, 2, 3)), images)
