"""Tests for the VGG19 layer table, the VGG builder and the perceptual loss (on a tiny VGG-shaped net)."""

import pytest
import torch
from torch import nn

from src.losses.perceptual import VGG19_LAYERS, VGGPerceptualLoss, build_vgg19_features
from tests.training.helpers import tiny_vgg as _tiny_vgg


@pytest.fixture(scope="module")
def vgg19_random():
    return build_vgg19_features(None)


def _pair(seed=1, shape=(2, 1, 16, 16)):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1, torch.rand(shape, generator=generator) * 2 - 1


def test_vgg19_layer_table_matches_torchvision(vgg19_random):
    features, description = vgg19_random
    assert description == "vgg19_random_init"
    assert len(VGG19_LAYERS) == 32
    for name, index in VGG19_LAYERS.items():
        expected = nn.Conv2d if name.startswith("conv") else nn.ReLU
        assert isinstance(features[index], expected), name
    assert VGG19_LAYERS["relu5_4"] == 35 and VGG19_LAYERS["conv5_4"] == 34 and VGG19_LAYERS["relu2_2"] == 8
    # Channel counts per block confirm the names: conv{b}_k has 64, 128, 256, 512, 512 outputs.
    for name, index in VGG19_LAYERS.items():
        if name.startswith("conv"):
            block = int(name[4])
            assert features[index].out_channels == [64, 128, 256, 512, 512][block - 1]
    unnamed = set(range(len(features))) - set(VGG19_LAYERS.values())
    assert all(isinstance(features[i], nn.MaxPool2d) for i in unnamed)


def test_random_init_is_fixed_and_leaves_global_rng_alone(vgg19_random):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    again, _ = build_vgg19_features(None)
    assert torch.equal(torch.rand(3), expected_next)
    for a, b in zip(vgg19_random[0].parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_full_vgg_truncates_after_deepest_layer(vgg19_random):
    loss = VGGPerceptualLoss(vgg19_random[0], ["relu1_2", "conv2_2"])
    assert len(loss.features) == VGG19_LAYERS["conv2_2"] + 1
    pred, target = _pair(shape=(1, 1, 32, 32))
    assert loss(pred, target) > 0


def test_zero_for_identical_and_positive_for_different():
    loss = VGGPerceptualLoss(_tiny_vgg(), ["relu1_2", "relu2_2"], [0.5, 2.0])
    pred, target = _pair()
    assert loss(pred, pred.clone()).item() == 0.0
    assert loss(pred, target).item() > 0


def test_weighted_sum_of_layers():
    vgg = _tiny_vgg()
    pred, target = _pair()
    single_1 = VGGPerceptualLoss(vgg, ["relu1_2"])(pred, target)
    single_2 = VGGPerceptualLoss(vgg, ["conv2_2"])(pred, target)
    both = VGGPerceptualLoss(vgg, ["relu1_2", "conv2_2"], [0.5, 2.0])(pred, target)
    assert both.item() == pytest.approx(0.5 * single_1.item() + 2.0 * single_2.item(), rel=1e-5)


def test_pre_activation_feature_not_overwritten_by_inplace_relu():
    # conv2_2 (index 7) is followed by an in-place ReLU in torchvision; its captured
    # pre-activation must keep its negative values, so conv and relu losses differ.
    vgg = _tiny_vgg()
    pred, target = _pair()
    conv = VGGPerceptualLoss(vgg, ["conv1_2"])
    relu = VGGPerceptualLoss(vgg, ["relu1_2"])
    assert conv(pred, target).item() != pytest.approx(relu(pred, target).item())
    conv_deep = VGGPerceptualLoss(vgg, ["conv1_2", "relu2_2"])
    assert conv_deep(pred, target).item() > relu(pred, target).item()


def test_does_not_mutate_inputs_or_callers_network():
    vgg = _tiny_vgg()
    flags = [p.requires_grad for p in vgg.parameters()]
    loss = VGGPerceptualLoss(vgg, ["relu2_2"])
    assert [p.requires_grad for p in vgg.parameters()] == flags
    assert vgg[1].inplace
    pred, target = _pair()
    pred_before, target_before = pred.clone(), target.clone()
    loss(pred, target)
    rgb_pred, rgb_target = pred.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1)
    rgb_before = rgb_pred.clone()
    loss(rgb_pred, rgb_target)
    assert torch.equal(pred, pred_before) and torch.equal(target, target_before)
    assert torch.equal(rgb_pred, rgb_before)


def test_one_channel_equals_repeated_rgb():
    loss = VGGPerceptualLoss(_tiny_vgg(), ["relu2_2"])
    pred, target = _pair()
    assert loss(pred, target).item() == pytest.approx(
        loss(pred.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1)).item(), rel=1e-6
    )


def test_gradient_reaches_pred_not_vgg_or_target():
    loss = VGGPerceptualLoss(_tiny_vgg(), ["relu1_1", "relu2_2"])
    pred, target = _pair()
    pred.requires_grad_(True)
    target.requires_grad_(True)
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_stays_in_eval_mode():
    parent = nn.ModuleDict({"percep": VGGPerceptualLoss(_tiny_vgg(), ["relu2_2"])})
    parent.train()
    assert not parent["percep"].features.training
    assert all(not m.training for m in parent["percep"].features.modules())


def test_unknown_layer_raises_listing_valid_names():
    with pytest.raises(ValueError, match="relu9_9.*relu2_2"):
        VGGPerceptualLoss(_tiny_vgg(), ["relu9_9"])
    with pytest.raises(ValueError):
        VGGPerceptualLoss(_tiny_vgg(), ["relu1_1", "relu2_2"], [1.0])


def test_bf16_autocast():
    loss = VGGPerceptualLoss(_tiny_vgg(), ["relu1_2", "relu2_2"])
    pred, target = _pair()
    pred.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(pred, target)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(loss(pred, target).item(), rel=0.05)
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
