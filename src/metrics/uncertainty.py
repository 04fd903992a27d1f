"""Test-time-augmentation uncertainty over the dihedral group, and rank agreement of uncertainty maps."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.stats import spearmanr

_SPATIAL = (-2, -1)


def _dihedral(images: torch.Tensor, rotations: int, flip: bool) -> torch.Tensor:
    if flip:
        images = torch.flip(images, dims=(-1,))
    return torch.rot90(images, rotations, dims=_SPATIAL)


def _inverse_dihedral(images: torch.Tensor, rotations: int, flip: bool) -> torch.Tensor:
    images = torch.rot90(images, -rotations, dims=_SPATIAL)
    if flip:
        images = torch.flip(images, dims=(-1,))
    return images


def dihedral_tta(
    model_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread of a model's output over the 8 dihedral transforms of its input (D4 test-time augmentation).

    Each transform (4 rotations by 90 degrees x optional horizontal flip) is applied to `images`,
    `model_fn` is run, and the inverse transform is applied to its output, which then lives in the
    input's orientation again. The inverse acts on the output's own spatial size, so outputs larger
    than the input (super-resolution) work. The per-pixel std is the test-time-augmentation
    uncertainty map of Ayhan & Berens 2018 and Wang et al. 2019, restricted to the lossless
    dihedral transforms. A model equivariant to the group gives std 0, so the map measures the
    model's lack of equivariance: a heuristic, not a calibrated uncertainty.

    model_fn: callable (N, C, S, S) -> (N, C', S', S'); run under torch.no_grad().
    images: (N, C, S, S), square (rot90 of a non-square image changes its shape).
    Returns (mean, std), each shaped like model_fn's output; std is the population std over the 8
        predictions (they are the whole group, not a sample), in the output's units.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"dihedral TTA needs square images, got {tuple(images.shape[-2:])}")
    outputs = []
    with torch.no_grad():
        for flip in (False, True):
            for rotations in range(4):
                output = model_fn(_dihedral(images, rotations, flip))
                outputs.append(_inverse_dihedral(output, rotations, flip))
    stacked = torch.stack(outputs)
    return stacked.mean(dim=0), stacked.std(dim=0, correction=0)


def spearman_correlation(map_a, map_b, max_pixels: int = 200_000, seed: int = 0) -> float:
    """Spearman rank correlation between two same-shape maps, e.g. TTA std vs absolute error.

    map_a, map_b: arrays or tensors of any identical shape, flattened. If they have more than
    `max_pixels` elements, the same deterministic random subset of `max_pixels` positions (from
    `seed`) is used for both, to bound the cost of ranking.
    Returns rho in [-1, 1] as a python float; NaN if either map is constant.
    """
    map_a = torch.as_tensor(map_a).detach().cpu().numpy()
    map_b = torch.as_tensor(map_b).detach().cpu().numpy()
    if map_a.shape != map_b.shape:
        raise ValueError(f"maps must have the same shape, got {map_a.shape} and {map_b.shape}")
    flat_a = map_a.reshape(-1).astype(np.float64)
    flat_b = map_b.reshape(-1).astype(np.float64)
    if flat_a.size > max_pixels:
        keep = np.random.default_rng(seed).choice(flat_a.size, size=max_pixels, replace=False)
        flat_a, flat_b = flat_a[keep], flat_b[keep]
    return float(spearmanr(flat_a, flat_b).statistic)
