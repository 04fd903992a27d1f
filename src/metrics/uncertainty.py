"""Test-time-augmentation uncertainty over the dihedral group, rank agreement of uncertainty maps, and
split-conformal calibration of a spread map into an error bound."""

from __future__ import annotations

import math
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


# ---------------------------------------------------------------- split-conformal calibration of a spread map
def conformal_quantile(scores, alpha: float) -> float:
    """The split-conformal quantile of calibration scores (Vovk et al. 2005; Angelopoulos & Bates 2021, Sec. 1).

    With n scores s_i = |error_i| / sigma_i, returns the ceil((n + 1)(1 - alpha))-th smallest:
    for a new score exchangeable with the calibration ones, P(s <= k) >= 1 - alpha, and at
    least a (1 - alpha) fraction of the calibration scores themselves is <= k.
    scores: any shape, flattened; finite or +inf (an error where the map is 0), never NaN.
    Returns +inf when that rank exceeds n (too few scores for the level: no finite bound covers).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0 or np.isnan(scores).any():
        raise ValueError(f"need one or more scores without NaN, got {scores.size} scores")
    n = scores.size
    rank = math.ceil(round((n + 1) * (1 - alpha), 9))  # round: 10 * 0.9 is 9.000000000000002 in floats
    if rank > n:
        return math.inf
    return float(np.partition(scores, rank - 1)[rank - 1])


def normalized_scores(abs_error, sigma, sigma_floor: float):
    """Nonconformity scores |error| / max(sigma, sigma_floor), same shape as the inputs.

    The floor (in the map's units, > 0) keeps a pixel with spread 0 from giving an infinite
    score; the calibrated bound is then k * max(sigma, sigma_floor), with the same floor.
    """
    if sigma_floor <= 0:
        raise ValueError(f"sigma_floor must be > 0, got {sigma_floor}")
    return np.asarray(abs_error, dtype=np.float64) / np.maximum(np.asarray(sigma, dtype=np.float64), sigma_floor)


def within_bound(abs_error, sigma, k: float, sigma_floor: float):
    """Boolean map: |error| <= k * max(sigma, sigma_floor), decided on the score as the fit decided it (the
    product k * sigma can round below an error whose score is exactly k)."""
    return normalized_scores(abs_error, sigma, sigma_floor) <= k


def reliability_bins(bound, abs_error, n_bins: int, level: float) -> list[dict[str, float]]:
    """Observed error against a predicted error bound, in `n_bins` equal-count bins of the bound.

    bound, abs_error: same-shape arrays (e.g. the foreground pixels of a test set), the bound
    predicted at coverage `level` (k * sigma). Per bin, in increasing order of the bound:
    `predicted` = mean bound, `observed_quantile` = the `level` quantile of |error| (equal to
    `predicted` where the bound is calibrated within the bin), `observed_mean` = mean |error|,
    `coverage` = fraction with |error| <= bound, `count` = pixels.
    """
    bound = np.asarray(bound, dtype=np.float64).reshape(-1)
    abs_error = np.asarray(abs_error, dtype=np.float64).reshape(-1)
    if bound.shape != abs_error.shape or bound.size < n_bins:
        raise ValueError(f"need same-size bound and error with >= {n_bins} values, got {bound.size}, {abs_error.size}")
    order = np.argsort(bound, kind="stable")
    rows = []
    for part in np.array_split(order, n_bins):
        b, e = bound[part], abs_error[part]
        rows.append({"predicted": float(b.mean()), "observed_quantile": float(np.quantile(e, level)),
                     "observed_mean": float(e.mean()), "coverage": float((e <= b).mean()), "count": int(part.size)})
    return rows
