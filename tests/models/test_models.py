"""Tests for the networks: SRResNet, PatchDiscriminator, ResnetGenerator, smp U-Net builder."""

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize

from src.data.degrade import degrade, naive_upsample
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator

PATCHGAN_70_FIELD = 70  # pix2pix/CycleGAN papers: the 3-layer PatchGAN sees 70x70 input pixels per logit
from src.models.segmenter import build_unet
from src.models.srresnet import SRResNet


def _images(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


# SRResNet


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_output_shape(scale):
    net = SRResNet(scale, "bicubic", channels=8, blocks=2)
    lr_img = _images((2, 1, 6, 10))
    assert net(lr_img).shape == (2, 1, 6 * scale, 10 * scale)
    assert sum(isinstance(m, nn.PixelShuffle) for m in net.modules()) == {2: 1, 4: 2, 8: 3}[scale]


@pytest.mark.parametrize("degradation", ["kspace", "bicubic"])
def test_srresnet_global_skip_is_naive_upsample(degradation):
    torch.manual_seed(0)
    net = SRResNet(4, degradation, channels=8, blocks=2)
    nn.init.zeros_(net.conv_last.weight)
    nn.init.zeros_(net.conv_last.bias)
    lr_img = degrade(_images((2, 1, 32, 32)), 4, degradation)
    assert torch.equal(net(lr_img), naive_upsample(lr_img, 4, degradation))


def test_srresnet_has_no_batchnorm_and_trains():
    net = SRResNet(2, "kspace", channels=8, blocks=3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    lr_img = _images((2, 1, 8, 8))
    net(lr_img).square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("scale", [1, 3, 6])
def test_srresnet_rejects_non_power_of_two(scale):
    with pytest.raises(ValueError, match="power of 2"):
        SRResNet(scale, "bicubic")


def test_srresnet_rejects_unknown_degradation():
    with pytest.raises(ValueError, match="gaussian"):
        SRResNet(2, "gaussian")


# PatchDiscriminator


@pytest.mark.parametrize("size", [(64, 64), (96, 96), (64, 96)])
def test_patch_discriminator_sizes(size):
    d = PatchDiscriminator(channels=8, n_layers=3)
    logits = d(_images((2, 1, *size)))
    assert logits.shape == (2, 1, size[0] // 8 - 2, size[1] // 8 - 2)


def test_patch_discriminator_output_6x6_at_64px_and_rejects_70px():
    d = PatchDiscriminator(channels=8, n_layers=3, spectral_norm=False)
    assert d(_images((1, 1, 64, 64))).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="70x70"):
        d(_images((1, 1, 70, 70)))
    with pytest.raises(ValueError, match="64x70"):
        d(_images((1, 1, 64, 70)))
    with pytest.raises(ValueError, match="too small"):
        d(_images((1, 1, 16, 16)))


def test_patch_discriminator_measured_receptive_field():
    torch.manual_seed(0)
    d = PatchDiscriminator(channels=4, n_layers=3, spectral_norm=False, norm="none")
    images = _images((1, 1, 128, 128)).requires_grad_(True)
    logits = d(images)
    logits[0, 0, 7, 7].backward()
    rows = images.grad[0, 0].abs().sum(dim=1).nonzero()
    cols = images.grad[0, 0].abs().sum(dim=0).nonzero()
    assert rows.max() - rows.min() + 1 <= PATCHGAN_70_FIELD
    assert cols.max() - cols.min() + 1 <= PATCHGAN_70_FIELD
    # Padding-free interior logit: its support spans the full field (up to zero-crossing pixels at the rim).
    assert rows.max() - rows.min() + 1 >= PATCHGAN_70_FIELD - 2


def test_patch_discriminator_downsample_judges_the_average_pooled_image_with_the_same_weights():
    torch.manual_seed(0)
    local = PatchDiscriminator(channels=4, n_layers=3, spectral_norm=False, norm="none")
    torch.manual_seed(0)
    global_ = PatchDiscriminator(channels=4, n_layers=3, spectral_norm=False, norm="none", downsample=2)
    # Same parameter names and shapes: the pooling is not a layer, checkpoints stay interchangeable.
    assert {k: v.shape for k, v in local.state_dict().items()} == {k: v.shape for k, v in global_.state_dict().items()}
    images = _images((2, 1, 128, 128))
    pooled = images.reshape(2, 1, 64, 2, 64, 2).mean(dim=(3, 5))  # 2x2 block means, written out by hand
    torch.testing.assert_close(global_(images), local(pooled))
    assert global_(images).shape == (2, 1, 6, 6)


def test_patch_discriminator_downsample_widens_the_receptive_field():
    torch.manual_seed(0)
    d = PatchDiscriminator(channels=4, n_layers=3, spectral_norm=False, norm="none", downsample=2)
    images = _images((1, 1, 256, 256)).requires_grad_(True)
    d(images)[0, 0, 7, 7].backward()
    rows = images.grad[0, 0].abs().sum(dim=1).nonzero()
    span = rows.max() - rows.min() + 1
    assert 2 * (PATCHGAN_70_FIELD - 2) <= span <= 2 * PATCHGAN_70_FIELD


def test_patch_discriminator_downsample_size_errors():
    d = PatchDiscriminator(channels=4, n_layers=3, spectral_norm=False, downsample=2)
    with pytest.raises(ValueError, match="divisible by downsample"):
        d(_images((1, 1, 72, 72)))   # divisible by 8, not by 16
    with pytest.raises(ValueError, match="too small"):
        d(_images((1, 1, 32, 32)))   # 16 px after pooling: no 1x1 map
    with pytest.raises(ValueError, match="downsample must be >= 1"):
        PatchDiscriminator(downsample=0)


def test_patch_discriminator_spectral_norm_and_norm_choice():
    with_sn = PatchDiscriminator(channels=8, n_layers=3, spectral_norm=True)
    convs = [m for m in with_sn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5
    assert all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in with_sn.modules())

    plain = PatchDiscriminator(channels=8, n_layers=3, spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in plain.modules()) == 3

    both = PatchDiscriminator(channels=8, n_layers=2, spectral_norm=True, norm="instance")
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in both.modules()) == 2
    with pytest.raises(ValueError, match="batch"):
        PatchDiscriminator(norm="batch")


def test_patch_discriminator_channel_cap():
    d = PatchDiscriminator(channels=2, n_layers=5, spectral_norm=False)
    out_channels = [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert out_channels == [2, 4, 8, 16, 16, 16, 1]


# ResnetGenerator


def test_resnet_generator_shape_range_and_no_transpose_conv():
    torch.manual_seed(0)
    g = ResnetGenerator(in_channels=1, channels=8, blocks=2)
    images = _images((2, 1, 32, 48))
    out = g(images)
    assert out.shape == images.shape
    assert out.abs().max() < 1
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, nn.Upsample) for m in g.modules()) == 2
    assert isinstance(list(g.modules())[-1], nn.Tanh)


def test_resnet_generator_default_is_junyanz_9_blocks_and_init():
    torch.manual_seed(0)
    g = ResnetGenerator()
    assert sum(type(m).__name__ == "ResnetBlock" for m in g.modules()) == 9
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)


def test_resnet_generator_rejects_size_not_divisible_by_4():
    with pytest.raises(ValueError, match="30x32"):
        ResnetGenerator(channels=4, blocks=1)(_images((1, 1, 30, 32)))


# U-Net segmenter


def test_build_unet_random_init_output_shape():
    model, description = build_unet("resnet18", 4, [32, 16, 8, 8], n_classes=4, encoder_weights_path=None)
    assert description == "resnet18_random_init"
    logits = model(_images((2, 1, 64, 48)))
    assert logits.shape == (2, 4, 64, 48)


def test_build_unet_loads_torchvision_resnet18(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(reference, path)
    torch.manual_seed(1)
    random_model, _ = build_unet("resnet18", 4, [32, 16, 8, 8], 3, None)
    torch.manual_seed(1)
    model, description = build_unet("resnet18", 4, [32, 16, 8, 8], 3, str(path))
    assert description == "resnet18_imagenet"
    encoder = model.encoder.state_dict()
    assert torch.equal(encoder["conv1.weight"], reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert encoder["conv1.weight"].shape == (64, 1, 7, 7)
    for key in ("layer1.0.conv1.weight", "layer4.1.conv2.weight", "bn1.running_var", "layer2.0.downsample.0.weight"):
        assert torch.equal(encoder[key], reference[key])
        assert not torch.equal(random_model.encoder.state_dict()[key], reference[key]) or key.endswith("running_var")
    assert not torch.equal(random_model.encoder.state_dict()["conv1.weight"], encoder["conv1.weight"])
    assert model(_images((1, 1, 32, 32))).shape == (1, 3, 32, 32)


def test_build_unet_rejects_incomplete_weights(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer3.0.conv1.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="layer3.0.conv1.weight"):
        build_unet("resnet18", 4, [32, 16, 8, 8], 3, str(path))


def test_residual_generator_starts_as_a_clamped_identity():
    from src.models.cyclegan import ResnetGenerator

    g = ResnetGenerator(1, 4, 1, residual=True)
    last_conv = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last_conv.weight)
    torch.nn.init.zeros_(last_conv.bias)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(g(x), x)
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.modules())
    y = ResnetGenerator(1, 4, 1, residual=True)(torch.rand(2, 1, 16, 16) * 4 - 2)
    assert y.min() >= -1 and y.max() <= 1


# Intensity branch (cross-contrast refiner)

def _zero_last_conv(g):
    last_conv = [m for m in g.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last_conv.weight)
    torch.nn.init.zeros_(last_conv.bias)


def test_intensity_branch_starts_at_the_identity():
    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(g.intensity(x), torch.zeros_like(x))
    _zero_last_conv(g)  # the conv path's own small init aside, the generator is exactly the identity
    torch.testing.assert_close(g(x), x)


def test_intensity_branch_keeps_the_background_and_is_pointwise():
    torch.manual_seed(0)
    branch = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8).intensity
    for p in branch.parameters():  # any weights, not only the zero start
        torch.nn.init.normal_(p, 0.0, 1.0)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    x[:, :, :4] = -1.0
    out = branch(x)
    assert torch.equal(out[:, :, :4], torch.zeros_like(out[:, :, :4]))
    assert out.abs().max() > 0.1
    # Pointwise: a pixel's output depends on its own value only (same value -> same output anywhere).
    y = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(branch(y), branch(y)[0, 0, 0, 0].expand_as(y))


def test_zero_initialised_intensity_branch_learns():
    """The zero last layer gets a gradient at once, the layers before it after one step."""
    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    target = -x  # a contrast inversion: what the conv path's identity start cannot give at once
    first, last = g.intensity.net[0], g.intensity.net[-1]
    g(x).sub(target).pow(2).mean().backward()
    assert last.weight.grad.abs().sum() > 0
    assert first.weight.grad is None or first.weight.grad.abs().sum() == 0  # blocked by the zero layer, for now
    opt = torch.optim.SGD(g.intensity.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad()
    g(x).sub(target).pow(2).mean().backward()
    assert first.weight.grad.abs().sum() > 0


def test_intensity_branch_fits_a_non_monotone_map():
    """T2 -> T1 reverses the tissue order (CSF 1.0 -> -0.2, GM -0.1 -> 0.4, WM -0.4 -> 0.8, background stays)."""
    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=16)
    _zero_last_conv(g)
    x = torch.tensor([-1.0, 1.0, -0.1, -0.4]).repeat(16).reshape(1, 1, 8, 8)
    target = torch.tensor([-1.0, -0.2, 0.4, 0.8]).repeat(16).reshape(1, 1, 8, 8)
    opt = torch.optim.Adam(g.intensity.parameters(), lr=1e-2)
    for _ in range(600):
        opt.zero_grad()
        loss = (g(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
    assert (g(x) - target).abs().max() < 0.05


def test_intensity_branch_needs_the_one_channel_refiner():
    with pytest.raises(ValueError, match="residual=True"):
        ResnetGenerator(1, 4, 1, residual=False, intensity_hidden=8)
    with pytest.raises(ValueError, match="in_channels=1"):
        ResnetGenerator(3, 4, 1, residual=True, intensity_hidden=8)
    assert ResnetGenerator(1, 4, 1, residual=True).intensity is None


@pytest.mark.parametrize("intensity_hidden", [0, 8])
def test_load_translator_rebuilds_the_saved_generator(tmp_path, intensity_hidden):
    from src.evaluation.models import load_translator
    from src.training.checkpoint import save_weights

    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=intensity_hidden)
    if intensity_hidden:
        torch.nn.init.normal_(g.intensity.net[-1].weight)  # a trained, non-zero branch must come back
    save_weights(tmp_path / "g.pt", g, {"channels": 4, "blocks": 1, "residual": True,
                                        "intensity_hidden": intensity_hidden})
    loaded = load_translator(tmp_path / "g.pt", expected=None)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(x), g.eval()(x))


def test_returning_clamp_lets_a_pixel_back_but_not_further_out():
    from src.models.cyclegan import ReturningClamp

    x = torch.tensor([-1.5, -1.5, 0.3, 1.5, 1.5], requires_grad=True)
    out = ReturningClamp.apply(x)
    assert torch.equal(out.detach(), torch.tensor([-1.0, -1.0, 0.3, 1.0, 1.0]))
    # Per-element upstream gradients; descent moves x by -grad.
    out.backward(torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0]))
    # -1.5 with grad -1: descent raises it (back inside) -> passes; with +1: pushes it further out -> blocked.
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0, 1.0, 0.0]))


# Pointwise phase (train.cyclegan.pointwise_steps)

def test_zero_start_refiner_is_exactly_its_input_and_its_last_layer_learns():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    default = ResnetGenerator(1, 4, 1, residual=True)
    assert (default(x) - x).abs().max() > 1e-3   # junyanz's N(0, 0.02) init moves every pixel at step 0
    g = ResnetGenerator(1, 4, 1, residual=True, zero_start=True)
    assert torch.equal(g(x), x)
    g(x).sub(-x).pow(2).mean().backward()
    assert g.net[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="zero_start needs the refiner"):
        ResnetGenerator(1, 4, 1, residual=False, zero_start=True)


def test_conv_path_switched_off_leaves_the_pointwise_branch_alone():
    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8)
    torch.nn.init.normal_(g.intensity.net[-1].weight, 0.0, 0.5)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    g.conv_path_enabled = False
    out = g(x)
    torch.testing.assert_close(out, (x + g.intensity(x)).clamp(-1, 1))
    out.sum().backward()
    assert all(p.grad is None for p in g.net.parameters())           # the conv path is not trained
    assert all(p.grad is not None for p in g.intensity.parameters())
    g.conv_path_enabled = True
    assert not torch.allclose(g(x), out)                               # back on: conv path adds its change
    plain = ResnetGenerator(1, 4, 1, residual=True)
    plain.conv_path_enabled = False
    with pytest.raises(RuntimeError, match="intensity branch"):
        plain(x)


def test_load_translator_of_a_pointwise_run_skips_the_untrained_conv_path(tmp_path):
    """pointwise_steps == steps: the file says conv_path false; the zero-start conv path outputs 0, so the
    loaded translator (conv path off) equals the saved generator with it on."""
    from src.evaluation.models import load_translator
    from src.training.checkpoint import save_weights

    torch.manual_seed(0)
    g = ResnetGenerator(1, 4, 1, residual=True, intensity_hidden=8, zero_start=True)
    torch.nn.init.normal_(g.intensity.net[-1].weight)
    save_weights(tmp_path / "g.pt", g, {"channels": 4, "blocks": 1, "residual": True, "intensity_hidden": 8,
                                        "conv_path": False})
    loaded = load_translator(tmp_path / "g.pt", expected=None)
    assert loaded.conv_path_enabled is False
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(x), g.eval()(x))
