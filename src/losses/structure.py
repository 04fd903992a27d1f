"""MIND structure loss: anatomy kept, contrast free (Heinrich et al. 2012; Yang et al. 2018).

Yang et al.'s structure-constrained CycleGAN (unpaired MR -> CT) adds to the cycle loss an L1
distance between the MIND descriptors of a generator's input and output. MIND describes each
pixel by how similar its patch is to its neighbours' patches, divided by a local variance:

    Dp(x, r)   = G_sigma * (I - I(. + r))^2        patch SSD to the neighbour at offset r
    V(x)       = mean of Dp(x, r) over the 4 nearest neighbours
    MIND(x, r) = exp(-Dp(x, r) / V(x)) / max_r exp(-Dp(x, r) / V(x))

Dividing by V makes the descriptor invariant to the size of a local contrast, and the squared
difference makes it invariant to its sign: an edge stays the same edge when the two tissues
swap order. That is exactly what a T2 -> T1 translator must do (CSF bright -> dark, GM/WM swap),
and what pixel-L1 cycle consistency resists: on the way from one order to the other the tissues
cross, the reconstruction error spikes, and the cycle term pulls the map back to the monotone
one (benchmarks/sim2real_pointwise_probe.json).

Written by hand: MONAI, kornia and torchmetrics have no MIND. Gaussian filtering is kornia's.
"""

from __future__ import annotations

import itertools

import kornia
import torch
import torch.nn.functional as F

PATCH_SIGMA = 1.0        # px: Gaussian patch weighting (Heinrich: 0.5 in 3D at ~1 mm; the demo slices are 1.5 mm)
SEARCH_RADIUS = 2        # dense search region (2R+1)^2 - 1 = 24 offsets (Yang et al. use a 9 x 9 region)
VARIANCE_CLAMP = 1000.0  # V within [mean / 1000, 1000 mean] of the image's mean V
FOUR_NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def search_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of the dense (2 radius + 1)^2 search region without its centre."""
    return [(dy, dx) for dy, dx in itertools.product(range(-radius, radius + 1), repeat=2) if (dy, dx) != (0, 0)]


def _shifted(image: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    """image(. + (dy, dx)) with edge replication (the border is not an edge), from a pre-padded copy."""
    height, width = image.shape[-2] - 2 * pad, image.shape[-1] - 2 * pad
    return image[..., pad + dy:pad + dy + height, pad + dx:pad + dx + width]


def _patch_distances(image: torch.Tensor, offsets: list[tuple[int, int]], sigma: float) -> torch.Tensor:
    """Dp for every offset: (N, len(offsets), H, W)."""
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    centre = _shifted(padded, 0, 0, pad)
    squared = torch.cat([(centre - _shifted(padded, dy, dx, pad)) ** 2 for dy, dx in offsets], dim=1)
    size = 2 * int(3 * sigma + 0.5) + 1
    return kornia.filters.gaussian_blur2d(squared, (size, size), (sigma, sigma), border_type="replicate")


def mind_descriptor(image: torch.Tensor, radius: int = SEARCH_RADIUS, sigma: float = PATCH_SIGMA) -> torch.Tensor:
    """MIND of (N, 1, H, W) images: (N, (2 radius + 1)^2 - 1, H, W), values in (0, 1], max 1 per pixel.

    Computed in float32 (under bf16 autocast the exp of a ratio of small SSDs is too coarse).
    """
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(image.shape)}")
    image = image.float()
    variance = _patch_distances(image, list(FOUR_NEIGHBOURS), sigma).mean(dim=1, keepdim=True)
    # Robustness clamp (Heinrich's), per image and relative to the image's mean V, so flat regions (V ~ 0,
    # e.g. the background) do not turn float noise into strong structure. Relative bounds keep the
    # descriptor exactly invariant to any a * I + b, a != 0 (Heinrich's [mean^2, sqrt(mean)] is not, and the
    # translator's tissue contrasts pass through small values on their way to the other order). No gradient.
    mean = variance.mean(dim=(1, 2, 3), keepdim=True).detach().clamp_min(1e-12)
    variance = torch.maximum(torch.minimum(variance, VARIANCE_CLAMP * mean), mean / VARIANCE_CLAMP)
    descriptor = torch.exp(-_patch_distances(image, search_offsets(radius), sigma) / variance)
    return descriptor / descriptor.amax(dim=1, keepdim=True)


def mind_loss(output: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the MIND descriptors of a generator's output and its input (0-dim)."""
    if output.shape != source.shape:
        raise ValueError(f"output {tuple(output.shape)} and source {tuple(source.shape)} differ in shape")
    return F.l1_loss(mind_descriptor(output), mind_descriptor(source))
