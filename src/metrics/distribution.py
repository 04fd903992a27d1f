"""Distances between sets of images or features: Frechet distance (FID), KID and sliced Wasserstein (SWD)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.image.kid import poly_mmd

from src.metrics.bootstrap import resample_counts

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


def _swd_directions(n_features: int, n_directions: int, generator) -> torch.Tensor:
    # (n_features, n_directions) unit vectors, drawn in PGGAN's chunks of 128.
    chunks = []
    for start in range(0, n_directions, SWD_DIRECTIONS_PER_CHUNK):
        n_chunk = min(SWD_DIRECTIONS_PER_CHUNK, n_directions - start)
        directions = torch.randn(n_features, n_chunk, generator=generator)
        chunks.append(directions / directions.norm(dim=0, keepdim=True))
    return torch.cat(chunks, dim=1)


def _swd_draws(n_a: int, n_b: int, images_shape: tuple[int, ...], descriptors_per_image: int, n_directions: int,
               seed: int, patch_size: int, min_resolution: int):
    """Every random draw of one SWD evaluation, in one generator order: the subset kept from the
    larger set, then per pyramid level the patch corners (rows, cols) and the unit directions.

    Depends only on the counts, the image shape and the settings, never on pixel values: two
    image sets of equal shape compared with one seed get the same patches and directions.
    """
    generator = torch.Generator().manual_seed(seed)
    n_images = min(n_a, n_b)
    keep = torch.sort(torch.randperm(max(n_a, n_b), generator=generator)[:n_images]).values
    channels, height, width = images_shape
    levels = []
    while True:
        rows = torch.randint(0, height - patch_size + 1, (n_images, descriptors_per_image), generator=generator)
        cols = torch.randint(0, width - patch_size + 1, (n_images, descriptors_per_image), generator=generator)
        directions = _swd_directions(channels * patch_size**2, n_directions, generator)
        levels.append((height, rows, cols, directions))
        if min(height, width) // 2 < min_resolution:
            return keep, levels
        height, width = (height + 1) // 2, (width + 1) // 2  # _pyr_down keeps every second pixel from 0


def _check_swd_inputs(images_a: torch.Tensor, images_b: torch.Tensor, descriptors_per_image: int,
                      n_directions: int, patch_size: int, min_resolution: int) -> None:
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(images_a.shape[1:])} vs {tuple(images_b.shape[1:])}")
    if min_resolution < patch_size:
        raise ValueError(f"min_resolution ({min_resolution}) must be >= patch_size ({patch_size})")
    if min(images_a.shape[-2:]) < min_resolution:
        raise ValueError(f"images of size {tuple(images_a.shape[-2:])} are smaller than "
                         f"min_resolution={min_resolution}")
    if descriptors_per_image < 1 or n_directions < 1:
        raise ValueError("descriptors_per_image and n_directions must be >= 1")
    if min(images_a.shape[0], images_b.shape[0]) < 1:
        raise ValueError("both image sets must be non-empty")


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
    _check_swd_inputs(images_a, images_b, descriptors_per_image, n_directions, patch_size, min_resolution)
    keep, draws = _swd_draws(images_a.shape[0], images_b.shape[0], tuple(images_a.shape[1:]), descriptors_per_image,
                             n_directions, seed, patch_size, min_resolution)
    n_images = len(keep)
    if images_a.shape[0] > n_images:
        images_a = images_a[keep]
    if images_b.shape[0] > n_images:
        images_b = images_b[keep]

    levels_a = _laplacian_pyramid(images_a, min_resolution)
    levels_b = _laplacian_pyramid(images_b, min_resolution)
    result = {}
    for level_a, level_b, (height, rows, cols, directions) in zip(levels_a, levels_b, draws):
        desc_a = _normalise_descriptors(_patch_descriptors(level_a, rows, cols, patch_size))
        desc_b = _normalise_descriptors(_patch_descriptors(level_b, rows, cols, patch_size))
        proj_a = torch.sort(desc_a @ directions, dim=0).values
        proj_b = torch.sort(desc_b @ directions, dim=0).values
        result[f"level_{height}px"] = float((proj_a - proj_b).abs().mean(dim=0).mean()) * 1e3
    result["mean"] = float(np.mean(list(result.values())))
    return result


# ---------------------------------------------------------------- paired resamples (bootstrap)
# Each function takes `indices` (B, n): row b picks n of the n aligned items with replacement
# (image i of every set belongs to test slice i), and returns the distance on each resample.
# The expensive part (features, patch descriptors) is computed once per image; a resample
# only re-indexes it, so 200 resamples cost seconds (see src/metrics/bootstrap.py).


def _check_resample(indices, n: int) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] != n or indices.size == 0:
        raise ValueError(f"indices must have shape (B, {n}), got {indices.shape}")
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices must lie in [0, {n})")
    return indices


def _paired_features(features_a, features_b) -> tuple[torch.Tensor, torch.Tensor]:
    features_a = _as_features(features_a, "features_a")
    features_b = _as_features(features_b, "features_b")
    _check_feature_pair(features_a, features_b)
    if features_a.shape[0] != features_b.shape[0]:
        raise ValueError(f"paired resampling needs equal counts, got {features_a.shape[0]} and {features_b.shape[0]}")
    return features_a, features_b


def resampled_frechet_distances(features_a, features_b, indices) -> np.ndarray:
    """frechet_distance(features_a[i], features_b[i]) for each resample row i of `indices`: (B,) float64.

    features_a, features_b: (n, D), row j of both from the same test slice. A resample keeps
    its duplicates, as a plug-in bootstrap does. Computed from n x n Gram matrices (centred
    with H = I - 11^T / n): with S = X^T H X / (n - 1), Tr S = tr(H G H) / (n - 1) and
    Tr (S_a S_b)^(1/2) = ||H X_a X_b^T H||_* / (n - 1) (the non-zero eigenvalues of S_a S_b are
    the squared singular values of that n x n matrix). With n = 14 slices and D = 512..2048
    features each resample costs an n x n SVD instead of a D x D eigendecomposition.
    """
    features_a, features_b = _paired_features(features_a, features_b)
    n = features_a.shape[0]
    if n < 2:
        raise ValueError("frechet_distance needs at least 2 samples per set")
    indices = torch.from_numpy(_check_resample(indices, n))
    grams = (features_a @ features_a.T, features_b @ features_b.T, features_a @ features_b.T)
    distances = []
    for chunk in indices.split(64):  # bounds memory at (64, n, n) per Gram matrix
        g_aa, g_bb, g_ab = (g[chunk[:, :, None], chunk[:, None, :]] for g in grams)
        mean_term = g_aa.mean(dim=(1, 2)) + g_bb.mean(dim=(1, 2)) - 2 * g_ab.mean(dim=(1, 2))
        c_aa, c_bb, c_ab = (_double_centre(g) for g in (g_aa, g_bb, g_ab))
        traces = (torch.diagonal(c_aa, dim1=1, dim2=2).sum(-1) + torch.diagonal(c_bb, dim1=1, dim2=2).sum(-1)) / (n - 1)
        trace_sqrt_product = torch.linalg.svdvals(c_ab).sum(-1) / (n - 1)
        distances.append(mean_term + traces - 2 * trace_sqrt_product)
    return torch.cat(distances).numpy()


def _double_centre(gram: torch.Tensor) -> torch.Tensor:
    return gram - gram.mean(dim=1, keepdim=True) - gram.mean(dim=2, keepdim=True) + gram.mean(dim=(1, 2), keepdim=True)


def resampled_kernel_distances(features_a, features_b, indices) -> np.ndarray:
    """KID's unbiased MMD^2 (cubic kernel, as kernel_distance) on each resample of whole sets: (B,) float64.

    features_a, features_b: (n, D), row j of both from the same test slice. A resample is a
    list of slices with w_j copies of slice j. The estimator keeps the structure of the
    unbiased one on distinct items: within a set, pairs of two copies of one slice are left
    out (as the estimator leaves out i = i; keeping them adds k(x, x) terms and biases MMD^2
    upwards); across the sets, each copy meets its own partner once (the matched pair (j, j)
    counts w_j times) and copies of other slices w_j w_k times. The identity resample
    (w = 1) is torchmetrics' poly_mmd of the whole sets, i.e. kernel_distance's value whenever
    its subsets are the whole set.
    """
    features_a, features_b = _paired_features(features_a, features_b)
    n, dim = features_a.shape
    weights = torch.from_numpy(resample_counts(_check_resample(indices, n), n))
    squares = weights.square()

    def kernel(x, y):
        return (x @ y.T / dim + 1.0) ** 3

    def other_pairs(k):  # sum over pairs of copies of two different slices, and how many there are
        total = torch.einsum("bi,ij,bj->b", weights, k, weights) - squares @ torch.diagonal(k)
        return total, weights.sum(1).square() - squares.sum(1)

    (aa, n_within), (bb, _) = other_pairs(kernel(features_a, features_a)), other_pairs(kernel(features_b, features_b))
    k_ab = kernel(features_a, features_b)
    ab, n_other = other_pairs(k_ab)
    cross = (ab + weights @ torch.diagonal(k_ab)) / (n_other + weights.sum(1))
    return ((aa + bb) / n_within - 2 * cross).numpy()


def resampled_sliced_wasserstein(image_sets: dict[str, torch.Tensor], reference, indices,
                                 descriptors_per_image: int = 128, n_directions: int = 512, seed: int = 0,
                                 patch_size: int = 7, min_resolution: int = 16) -> dict[str, np.ndarray]:
    """SWD (x 1e3, mean over levels) of each image set to `reference` on each resample: {name: (B,)}.

    image_sets: {name: (n, C, H, W)}, reference (n, C, H, W); image j of every set and of the
    reference come from the same test slice. The patches and directions are those of
    sliced_wasserstein_distance(set, reference, ..., seed), and every descriptor is projected
    once: a resample gathers its images' projections, applies its own per-set normalisation
    (affine per channel, so it commutes with the projection) and sorts (numpy's sort: ~15x
    faster than torch's on CPU). The identity resample reproduces sliced_wasserstein_distance's
    "mean". Memory: 4 * n * descriptors_per_image * C * n_directions bytes per level and set
    (3.7 MB for 14 single-channel slices).
    """
    reference = _as_images(reference, "reference")
    sets = {name: _as_images(images, name) for name, images in image_sets.items()}
    n = reference.shape[0]
    for name, images in sets.items():
        _check_swd_inputs(images, reference, descriptors_per_image, n_directions, patch_size, min_resolution)
        if images.shape[0] != n:
            raise ValueError(f"{name}: {images.shape[0]} images but the reference has {n}; resampling pairs them")
    indices = _check_resample(indices, n)
    _, draws = _swd_draws(n, n, tuple(reference.shape[1:]), descriptors_per_image, n_directions, seed,
                          patch_size, min_resolution)
    reference_levels = _projected_levels(reference, draws, patch_size, min_resolution)
    set_levels = {name: _projected_levels(images, draws, patch_size, min_resolution) for name, images in sets.items()}
    out = {name: np.empty(len(indices)) for name in sets}

    def score(b: int) -> None:
        rows = indices[b]
        reference_sorted = [_sorted_projections(level, rows) for level in reference_levels]
        for name, levels in set_levels.items():
            per_level = [np.abs(_sorted_projections(level, rows) - ref).mean() * 1e3
                         for level, ref in zip(levels, reference_sorted)]
            out[name][b] = np.mean(per_level)

    # The resamples are independent and numpy's sort (most of the time) releases the GIL: threads, one per
    # thread torch was given (the cores, or OMP_NUM_THREADS), nearly halve the time on 2 cores. Each resample
    # is computed as one thread alone would, so the values do not depend on the thread count.
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        list(pool.map(score, range(len(indices))))
    return out


def _projected_levels(images: torch.Tensor, draws, patch_size: int, min_resolution: int) -> list[tuple]:
    """Per level: raw projections (C, K, n, P) float32, per-image channel sums and sums of squares (n, C)
    float64, values per image and channel, and the directions summed per channel (C, K)."""
    n, channels = images.shape[:2]
    levels = []
    for level, (_, rows, cols, directions) in zip(_laplacian_pyramid(images, min_resolution), draws):
        desc = _patch_descriptors(level, rows, cols, patch_size).reshape(n, rows.shape[1], channels, -1).numpy()
        dirs = directions.numpy().reshape(channels, -1, directions.shape[1])  # (C, patch^2, K)
        projections = np.einsum("npcq,cqk->cknp", desc, dirs, optimize=True).astype(np.float32)
        wide = desc.astype(np.float64)
        levels.append((projections, wide.sum(axis=(1, 3)), np.square(wide).sum(axis=(1, 3)),
                       desc.shape[1] * desc.shape[3], dirs.sum(axis=1)))
    return levels


def _sorted_projections(level: tuple, rows: np.ndarray) -> np.ndarray:
    # The resample's descriptors normalised by their own per-channel mean and std (as
    # _normalise_descriptors), projected: (K, n * P), each row sorted.
    projections, sums, squares, per_image, direction_sums = level
    count = len(rows) * per_image
    mean = sums[rows].sum(0) / count
    std = np.maximum(np.sqrt(np.maximum(squares[rows].sum(0) / count - mean**2, 0.0)), 1e-8)
    gathered = projections[:, :, rows].reshape(*projections.shape[:2], -1)  # (C, K, n * P)
    combined = sum((gathered[c] - (mean[c] * direction_sums[c])[:, None].astype(np.float32)) / np.float32(std[c])
                   for c in range(len(mean)))
    combined.sort(axis=1)
    return combined
