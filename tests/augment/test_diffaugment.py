"""Tests for DiffAugment: contracts (shape, dtype, gradients), -1 fill, per-sample randomness, seeding."""

import pytest
import torch

from src.augment.diffaugment import AUGMENT_FNS, diff_augment, parse_policy, rand_cutout, rand_translation

FULL = "color,translation,cutout"


def _images(n=4, h=32, w=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=generator) * 2 - 1


def test_parse_policy():
    assert parse_policy("") == ()
    assert parse_policy(FULL) == ("color", "translation", "cutout")
    assert parse_policy("cutout, color") == ("cutout", "color")
    assert set(AUGMENT_FNS) == {"color", "translation", "cutout"}


def test_unknown_op_raises_naming_op_and_allowed():
    with pytest.raises(ValueError, match="'flip'.*color"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="flip"):
        diff_augment(_images(), "flip")


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_keeps_shape_dtype_device(policy, dtype):
    images = _images().to(dtype)
    out = diff_augment(images, policy)
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert torch.isfinite(out.float()).all()


def test_empty_policy_is_identity():
    images = _images()
    assert diff_augment(images, "") is images


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL])
def test_gradient_flows(policy):
    torch.manual_seed(0)
    images = _images().requires_grad_(True)
    weights = torch.randn_like(images)
    (diff_augment(images, policy) * weights).sum().backward()
    assert images.grad is not None
    assert torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_translation_and_cutout_fill_background():
    background = torch.full((8, 1, 32, 32), -1.0)
    torch.manual_seed(1)
    out = diff_augment(background, "translation,cutout")
    assert torch.equal(out, background)


def test_cutout_fills_with_minus_one():
    torch.manual_seed(2)
    out = diff_augment(torch.ones(8, 1, 32, 32), "cutout")
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    # Side int(32 * 0.5 + 0.5) = 16; clipped at the border, at least half of it remains.
    cut = (out == -1).flatten(1).sum(1)
    assert (cut <= 16 * 16).all() and (cut >= 8 * 8).all()


def test_translation_pads_with_fill_and_shifts_exactly():
    torch.manual_seed(3)
    images = torch.ones(16, 1, 32, 32)
    out = rand_translation(images, fill=-1.0)
    assert set(out.unique().tolist()) <= {-1.0, 1.0}
    # Shifts are at most int(32/8 + 0.5) = 4 px per axis: the central block always survives.
    assert (out[..., 4:-4, 4:-4] == 1).all()
    assert (out == -1).any()
    # Integer shifts copy pixel values without interpolation.
    ramp = torch.arange(32.0).view(1, 1, 1, 32).expand(16, 1, 32, 32) / 32
    shifted = rand_translation(ramp, fill=-1.0)
    assert set(shifted.unique().tolist()) <= set(ramp.unique().tolist()) | {-1.0}


def test_custom_fill():
    torch.manual_seed(4)
    out = rand_cutout(torch.ones(4, 1, 16, 16), fill=0.25)
    assert set(out.unique().tolist()) == {0.25, 1.0}


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_per_sample_randomness(policy):
    torch.manual_seed(5)
    image = _images(n=1)
    out = diff_augment(image.repeat(2, 1, 1, 1), policy)
    assert not torch.equal(out[0], out[1])


def test_reproducible_under_manual_seed():
    images = _images()
    torch.manual_seed(6)
    first = diff_augment(images, FULL)
    torch.manual_seed(6)
    second = diff_augment(images, FULL)
    third = diff_augment(images, FULL)
    assert torch.equal(first, second)
    assert not torch.equal(second, third)


def test_color_ranges():
    # Brightness U(-.5, .5) shifts a constant image; contrast leaves a constant image alone.
    torch.manual_seed(7)
    out = diff_augment(torch.zeros(256, 1, 4, 4), "color")
    per_image = out.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image))
    shifts = per_image[:, 0]
    assert shifts.min() >= -0.5 and shifts.max() <= 0.5
    assert shifts.min() < -0.4 and shifts.max() > 0.4


def test_does_not_mutate_input():
    images = _images()
    before = images.clone()
    torch.manual_seed(8)
    diff_augment(images, FULL)
    assert torch.equal(images, before)


def _reference_diffaugment(x, policy):
    """mit-han-lab/data-efficient-gans DiffAugment_pytorch.py (zero fill), ported for the comparison."""

    def rand_brightness(x):
        return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)

    def rand_saturation(x):
        x_mean = x.mean(dim=1, keepdim=True)
        return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + x_mean

    def rand_contrast(x):
        x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + x_mean

    def rand_translation(x, ratio=0.125):
        shift_x, shift_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
        translation_x = torch.randint(-shift_x, shift_x + 1, size=[x.size(0), 1, 1], device=x.device)
        translation_y = torch.randint(-shift_y, shift_y + 1, size=[x.size(0), 1, 1], device=x.device)
        grid_batch, grid_x, grid_y = torch.meshgrid(
            torch.arange(x.size(0)), torch.arange(x.size(2)), torch.arange(x.size(3)), indexing="ij"
        )
        grid_x = torch.clamp(grid_x + translation_x + 1, 0, x.size(2) + 1)
        grid_y = torch.clamp(grid_y + translation_y + 1, 0, x.size(3) + 1)
        x_pad = torch.nn.functional.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
        return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)

    def rand_cutout(x, ratio=0.5):
        cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
        offset_x = torch.randint(0, x.size(2) + (1 - cutout_size[0] % 2), size=[x.size(0), 1, 1], device=x.device)
        offset_y = torch.randint(0, x.size(3) + (1 - cutout_size[1] % 2), size=[x.size(0), 1, 1], device=x.device)
        grid_batch, grid_x, grid_y = torch.meshgrid(
            torch.arange(x.size(0)), torch.arange(cutout_size[0]), torch.arange(cutout_size[1]), indexing="ij"
        )
        grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
        grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
        mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
        mask[grid_batch, grid_x, grid_y] = 0
        return x * mask.unsqueeze(1)

    fns = {"color": [rand_brightness, rand_saturation, rand_contrast], "translation": [rand_translation], "cutout": [rand_cutout]}
    for p in policy.split(","):
        for f in fns[p]:
            x = f(x)
    return x


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL, "cutout,translation"])
@pytest.mark.parametrize("size", [(32, 40), (17, 23)])
def test_matches_reference_implementation_with_zero_fill(policy, size):
    images = _images(n=8, h=size[0], w=size[1], seed=9).double()
    torch.manual_seed(10)
    ours = diff_augment(images, policy, fill=0.0)
    torch.manual_seed(10)
    reference = _reference_diffaugment(images, policy)
    assert torch.allclose(ours, reference, atol=1e-12)
