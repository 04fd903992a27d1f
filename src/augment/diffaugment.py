"""DiffAugment: differentiable augmentation of every image a discriminator sees (Zhao et al. 2020).

Reference: Zhao, Liu, Lin, Zhu, Han, "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020, and its `DiffAugment_pytorch.py` (mit-han-lab/data-efficient-gans).
The ops and their parameter ranges are the reference ones; the one deliberate change is the
fill value: the reference pads and cuts out with 0, which is mid-grey in [-1, 1], whereas a
medical slice's background is -1, so padding and cutout use `fill` (default -1). A mid-grey
square would be a trivial "augmented" cue that never occurs in real data.

Images are (N, C, H, W) float tensors in the model range [-1, 1]. Every random parameter is
drawn per sample from the torch global RNG of `images.device`, so `torch.manual_seed` makes
a call reproducible. All ops are differentiable w.r.t. the images (the G step back-propagates
through them).
"""

from __future__ import annotations

from typing import Callable

import kornia
import torch

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One U(low, high) value per sample, shaped (N, 1, 1, 1) to broadcast over C, H, W."""
    u = torch.rand(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device)
    return u * (high - low) + low


def rand_brightness(images: torch.Tensor) -> torch.Tensor:
    """x + U(-0.5, 0.5) per sample."""
    return images + _uniform(images, -0.5, 0.5)


def rand_saturation(images: torch.Tensor) -> torch.Tensor:
    """(x - mean_c) * U(0, 2) + mean_c per sample, mean over channels per pixel.

    An identity for 1-channel images (x equals its channel mean); kept, and its random
    draw kept, so that the RNG stream and the maths match the reference for any C.
    """
    channel_mean = images.mean(dim=1, keepdim=True)
    return (images - channel_mean) * _uniform(images, 0.0, 2.0) + channel_mean


def rand_contrast(images: torch.Tensor) -> torch.Tensor:
    """(x - mean) * U(0.5, 1.5) + mean per sample, mean over (C, H, W) of each image."""
    image_mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - image_mean) * _uniform(images, 0.5, 1.5) + image_mean


def _color(images: torch.Tensor, fill: float) -> torch.Tensor:
    """Brightness, saturation, contrast; `fill` is unused (no pixel is uncovered) but kept so every
    op in AUGMENT_FNS has the same signature."""
    return rand_contrast(rand_saturation(rand_brightness(images)))


def rand_translation(images: torch.Tensor, fill: float = -1.0, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Integer shift per sample, up to +-int(size * ratio + 0.5) px per axis, padded with `fill`.

    kornia pads with zeros, so the warp runs on (x - fill) and adds `fill` back: uncovered
    pixels come out as exactly `fill`. Nearest sampling of an integer shift copies pixels
    exactly (no interpolation blur), and the gradient still flows to the copied pixels.
    """
    n, _, h, w = images.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Row shift drawn first, then column shift, and the sign flipped, so that seed for seed the
    # result equals the reference's out[i, j] = x[i + dy, j + dx].
    dy = torch.randint(-max_dy, max_dy + 1, (n,), device=images.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), device=images.device)
    # At least float32 for the sampling grid: bf16 coordinates can round a shift by a pixel.
    work_dtype = torch.promote_types(images.dtype, torch.float32)
    shifted = kornia.geometry.transform.translate(
        (images - fill).to(work_dtype),
        -torch.stack([dx, dy], dim=1).to(work_dtype),
        mode="nearest",
        padding_mode="zeros",
        align_corners=True,
    )
    return (shifted + fill).to(images.dtype)


def rand_cutout(images: torch.Tensor, fill: float = -1.0, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """One square per sample, side int(size * ratio + 0.5), random centre, clipped at borders, set to `fill`.

    Written by hand: kornia's RandomErasing draws a random area and aspect ratio, which is
    not the DiffAugment cutout (a fixed-size square whose centre may sit on the border).
    Centre ranges match the reference: [0, size) for odd sides, [0, size] for even ones.
    """
    n, _, h, w = images.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centre_y = torch.randint(0, h + (1 - size_h % 2), (n, 1, 1), device=images.device)
    centre_x = torch.randint(0, w + (1 - size_w % 2), (n, 1, 1), device=images.device)
    top, left = centre_y - size_h // 2, centre_x - size_w // 2
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    keep = (~inside).unsqueeze(1).to(images.dtype)
    # Blend rather than index-assign: out-of-place, and the kept pixels keep their gradient.
    return images * keep + fill * (1.0 - keep)


AUGMENT_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "color": _color,
    "translation": rand_translation,
    "cutout": rand_cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """Split a policy string: 'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' -> ().

    Raises ValueError naming an unknown op and the allowed ones.
    """
    if policy.strip() == "":
        return ()
    ops = tuple(op.strip() for op in policy.split(","))
    for op in ops:
        if op not in AUGMENT_FNS:
            raise ValueError(f"unknown DiffAugment op {op!r} in policy {policy!r}; allowed: {tuple(AUGMENT_FNS)}")
    return ops


def diff_augment(images: torch.Tensor, policy: str, fill: float = -1.0) -> torch.Tensor:
    """Apply the DiffAugment ops named in `policy`, in the order given.

    images: (N, C, H, W) float in [-1, 1] (the result may leave that range: brightness and
    contrast are not clamped, as in the reference). fill: value of padded and cut-out pixels
    (the background, -1). Returns a new tensor of the same shape, dtype and device,
    differentiable w.r.t. `images`; an empty policy returns `images` itself.
    """
    ops = parse_policy(policy)
    if not ops:
        return images
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    for op in ops:
        images = AUGMENT_FNS[op](images, fill=fill)
    return images.contiguous()
