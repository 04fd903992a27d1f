"""Distances between sets of images or features: Frechet distance (FID), KID and sliced Wasserstein (SWD)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.image.kid import poly_mmd

# Karras et al. 2018 (PGGAN, metrics/sliced_wasserstein.py): directions are drawn in chunks of 128.
SWD_DIRECTIONS_PER_CHUNK = 128
# 5x5 binomial filter of PGGAN's pyr_down/pyr_up (matches cv2.pyrDown).
_BINOMIAL_1D = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def _as_features(features, name: str) -> torch.Tensor:
    features = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(features.shape)}")
    return features


def _check_feature_pair(features_a: torch.Tensor, features_b: torch.Tensor) -> None:
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {features_a.shape[1]} (features_a) vs {features_b.shape[1]} (features_b)"
        )


def _covariance(features: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    # (D, D) unbiased covariance; torch.cov would return a 0-d tensor for D = 1.
    centred = features - mean
    return centred.T @ centred / (features.shape[0] - 1)


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, eq. 6).

    d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    features_a: (N_a, D), features_b: (N_b, D); numpy arrays or torch tensors, N >= 2.
    Means and unbiased (N - 1) covariances in float64, as pytorch-fid's np.cov. With Inception
    pool3 features this is FID; with any other extractor it is a Frechet distance that is not
    comparable to published FID. The estimate is biased upwards at small N: compare only at equal N.
    Returns a python float, in squared feature units.
    """
    features_a = _as_features(features_a, "features_a")
    features_b = _as_features(features_b, "features_b")
    _check_feature_pair(features_a, features_b)
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError("frechet_distance needs at least 2 samples per set")
    mu_a, mu_b = features_a.mean(dim=0), features_b.mean(dim=0)
    sigma_a, sigma_b = _covariance(features_a, mu_a), _covariance(features_b, mu_b)
    # Tr sqrt(S_a S_b) = sum sqrt(eig(S_a S_b)): S_a S_b is similar to a PSD matrix, so its eigenvalues
    # are real and >= 0 up to round-off. This avoids scipy.linalg.sqrtm, which is slow in 2048-d and
    # needs an epsilon retry when the product is singular (N < D). Same trick as torchmetrics' FID.
    eigenvalues = torch.linalg.eigvals(sigma_a @ sigma_b)
    trace_sqrt_product = eigenvalues.sqrt().real.sum()
    mean_term = (mu_a - mu_b).square().sum()
    return float(mean_term + torch.trace(sigma_a) + torch.trace(sigma_b) - 2.0 * trace_sqrt_product)


def kernel_distance(features_a, features_b, n_subsets: int, subset_size: int, seed: int) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018, Sec. 3 / eq. 1): unbiased MMD^2 with a cubic kernel.

    k(x, y) = (x . y / D + 1)^3. For each of `n_subsets` draws, `subset_size` rows are sampled
    without replacement from each set and the unbiased MMD^2 estimate is computed; the estimator is
    unbiased, so for two samples of one distribution it scatters around 0 and can be negative.

    features_a: (N_a, D), features_b: (N_b, D); numpy arrays or torch tensors.
    subset_size is clamped to min(N_a, N_b) and must end up >= 2.
    seed: makes the subset draws deterministic.
    Returns (mean, std) over subsets as python floats (population std, as clean-fid and torchmetrics).
    """
    features_a = _as_features(features_a, "features_a")
    features_b = _as_features(features_b, "features_b")
    _check_feature_pair(features_a, features_b)
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    subset_size = min(subset_size, features_a.shape[0], features_b.shape[0])
    if subset_size < 2:
        raise ValueError(
            f"KID needs subsets of at least 2 samples; got subset_size={subset_size} "
            f"with N_a={features_a.shape[0]}, N_b={features_b.shape[0]}"
        )
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(n_subsets):
        subset_a = features_a[torch.randperm(features_a.shape[0], generator=generator)[:subset_size]]
        subset_b = features_b[torch.randperm(features_b.shape[0], generator=generator)[:subset_size]]
        scores.append(poly_mmd(subset_a, subset_b, degree=3, gamma=None, coef=1.0))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(correction=0))


def _as_images(images, name: str) -> torch.Tensor:
    images = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    return images


def _binomial_blur(images: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    channels = images.shape[1]
    kernel = (torch.outer(_BINOMIAL_1D, _BINOMIAL_1D) * gain).to(images.dtype)
    kernel = kernel.expand(channels, 1, 5, 5)
    # torch's "reflect" is scipy.ndimage's "mirror" (edge not repeated), what PGGAN uses.
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=channels)


def _pyr_down(images: torch.Tensor) -> torch.Tensor:
    return _binomial_blur(images)[..., ::2, ::2]


def _pyr_up(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Zero-insertion then the same filter with gain 4 (cv2.pyrUp); `size` handles odd parent sizes.
    upsampled = images.new_zeros(*images.shape[:2], *size)
    upsampled[..., ::2, ::2] = images
    return _binomial_blur(upsampled, gain=4.0)


def _laplacian_pyramid(images: torch.Tensor, min_resolution: int) -> list[torch.Tensor]:
    gaussian = [images]
    while min(gaussian[-1].shape[-2:]) // 2 >= min_resolution:
        gaussian.append(_pyr_down(gaussian[-1]))
    # Band-pass levels, plus the coarsest Gaussian level as the low-pass residual (as in PGGAN).
    laplacian = [fine - _pyr_up(coarse, fine.shape[-2:]) for fine, coarse in zip(gaussian[:-1], gaussian[1:])]
    return laplacian + [gaussian[-1]]


def _patch_descriptors(level: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> torch.Tensor:
    # rows, cols: (N, P) top-left corners; returns (N * P, C, patch_size, patch_size).
    n_images, channels = level.shape[:2]
    offsets = torch.arange(patch_size)
    row_index = (rows[..., None] + offsets)[..., :, None]  # (N, P, patch, 1)
    col_index = (cols[..., None] + offsets)[..., None, :]  # (N, P, 1, patch)
    image_index = torch.arange(n_images)[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[image_index, row_index, col_index]  # (N, P, patch, patch, C)
    return patches.reshape(-1, patch_size, patch_size, channels).permute(0, 3, 1, 2)


def _normalise_descriptors(descriptors: torch.Tensor) -> torch.Tensor:
    # Each set by its own per-channel statistics (PGGAN finalize_descriptors): SWD then compares
    # local structure, not global brightness/contrast. The clamp only guards an all-constant set.
    mean = descriptors.mean(dim=(0, 2, 3), keepdim=True)
    std = descriptors.std(dim=(0, 2, 3), keepdim=True, correction=0).clamp_min(1e-8)
    return ((descriptors - mean) / std).flatten(start_dim=1)


def _sliced_wasserstein(desc_a: torch.Tensor, desc_b: torch.Tensor, n_directions: int, generator) -> float:
    distances = []
    for start in range(0, n_directions, SWD_DIRECTIONS_PER_CHUNK):
        n_chunk = min(SWD_DIRECTIONS_PER_CHUNK, n_directions - start)
        directions = torch.randn(desc_a.shape[1], n_chunk, generator=generator)
        directions = directions / directions.norm(dim=0, keepdim=True)
        proj_a = torch.sort(desc_a @ directions, dim=0).values
        proj_b = torch.sort(desc_b @ directions, dim=0).values
        # Sum then divide, so that a short last chunk weighs by its number of directions.
        distances.append((proj_a - proj_b).abs().mean(dim=0).sum())
    return float(torch.stack(distances).sum() / n_directions)


def sliced_wasserstein_distance(
    images_a,
    images_b,
    descriptors_per_image: int = 128,
    n_directions: int = 512,
    seed: int = 0,
    patch_size: int = 7,
    min_resolution: int = 16,
) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance between two image sets (Karras et al. 2018, Sec. 5 / App. D).

    Port of PGGAN's metrics/sliced_wasserstein.py (written here because neither torchmetrics nor
    MONAI has it): a Laplacian pyramid (5x5 binomial filter, mirror padding) from full resolution
    down to `min_resolution`; per level `descriptors_per_image` random patch_size x patch_size
    neighbourhoods per image (C * patch_size^2-dim descriptors), each descriptor set normalised by
    its own per-channel mean and std; `n_directions` random unit projections (chunks of 128),
    sorted, mean absolute difference of the sorted values.

    images_a, images_b: (N, C, H, W), numpy arrays or torch tensors with the same (C, H, W);
        any intensity scale (the per-set normalisation removes it), e.g. [-1, 1].
    Unequal N: the larger set is subsampled to the smaller count without replacement, with a draw
        that depends only on `seed` and the two counts, so the distance stays symmetric.
    seed: patch positions and directions are deterministic. The SAME patch positions are used for
        both sets (common random numbers), so SWD(a, b) == SWD(b, a) and SWD(a, a) == 0 exactly;
        PGGAN draws them independently, which adds a small noise floor.
    Returns {"level_<h>px": SWD * 1e3, ..., "mean": mean over levels}, finest level first, with the
        x1e3 scaling PGGAN reports. Values are only comparable at equal N and settings.
    """
    images_a = _as_images(images_a, "images_a")
    images_b = _as_images(images_b, "images_b")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(images_a.shape[1:])} vs {tuple(images_b.shape[1:])}")
    if min_resolution < patch_size:
        raise ValueError(f"min_resolution ({min_resolution}) must be >= patch_size ({patch_size})")
    if min(images_a.shape[-2:]) < min_resolution:
        raise ValueError(f"images of size {tuple(images_a.shape[-2:])} are smaller than min_resolution={min_resolution}")
    if descriptors_per_image < 1 or n_directions < 1:
        raise ValueError("descriptors_per_image and n_directions must be >= 1")

    generator = torch.Generator().manual_seed(seed)
    n_images = min(images_a.shape[0], images_b.shape[0])
    if n_images < 1:
        raise ValueError("both image sets must be non-empty")
    keep = torch.sort(torch.randperm(max(images_a.shape[0], images_b.shape[0]), generator=generator)[:n_images]).values
    if images_a.shape[0] > n_images:
        images_a = images_a[keep]
    if images_b.shape[0] > n_images:
        images_b = images_b[keep]

    levels_a = _laplacian_pyramid(images_a, min_resolution)
    levels_b = _laplacian_pyramid(images_b, min_resolution)
    result = {}
    for level_a, level_b in zip(levels_a, levels_b):
        height, width = level_a.shape[-2:]
        rows = torch.randint(0, height - patch_size + 1, (n_images, descriptors_per_image), generator=generator)
        cols = torch.randint(0, width - patch_size + 1, (n_images, descriptors_per_image), generator=generator)
        desc_a = _normalise_descriptors(_patch_descriptors(level_a, rows, cols, patch_size))
        desc_b = _normalise_descriptors(_patch_descriptors(level_b, rows, cols, patch_size))
        result[f"level_{height}px"] = _sliced_wasserstein(desc_a, desc_b, n_directions, generator) * 1e3
    result["mean"] = float(np.mean(list(result.values())))
    return result
