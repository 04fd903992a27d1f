"""SynthSeg-style domain randomisation: a fresh image from each label map, for every batch.

Billot et al., "SynthSeg", Medical Image Analysis 86:102789 (2023): a segmenter trained only
on images synthesised from label maps with randomly drawn appearance generalises to real
scans. Per image, as in SynthSeg's generative model (2-D here, and after the geometric
augmentation the segmenter recipe already applies to the label map):

1. a Gaussian mixture: each tissue gets a mean and a within-tissue std drawn uniformly from
   the ranges in params.yaml (`evaluate.randomization`); with `t1_ordering` the three means
   are sorted so that CSF < GM < WM (a T1 prior: it knows the target contrast); without it, as SynthSeg,
   any order (the default: contrast-agnostic);
2. a smooth multiplicative bias field: a coarse grid of N(0, bias_field_std) values,
   upsampled bicubically and exponentiated;
3. a Gaussian blur of random std (partial volume at a random resolution; kornia);
4. a random gamma, exp(N(0, gamma_log_std)), on the [0, 1]-scaled image (kornia);
5. Gaussian noise of random std;
6. the real slices' normalisation: each image's foreground 0.5th/99.5th percentiles to
   [-1, 1], background exactly -1.

MONAI's RandBiasField/RandGaussianSmooth draw per image from their own numpy RNGs and loop
in Python; this module draws everything for the batch from one torch.Generator, so a run is
reproducible from its seed and the draws differ from batch to batch. The label map is only
read, never moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from src.config import RandomizationConfig
from src.data.preprocess import BACKGROUND

NORMALISE_PERCENTILES = (0.005, 0.995)  # as data.percentiles for the real slices


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def randomized_images(labels: torch.Tensor, n_tissues: int, ranges: RandomizationConfig,
                      generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) float32 images in [-1, 1] synthesised from label maps (B, H, W) (0 = background).

    All randomness comes from `generator` (on the CPU); the result is on the labels' device.
    """
    b, h, w = labels.shape
    means = _uniform(*ranges.tissue_mean, (b, n_tissues), generator)
    if ranges.t1_ordering:
        means = means.sort(dim=1).values
    stds = _uniform(*ranges.tissue_std, (b, n_tissues), generator)
    means = torch.cat([torch.zeros(b, 1), means], dim=1)
    stds = torch.cat([torch.zeros(b, 1), stds], dim=1)
    flat = labels.reshape(b, -1).long().cpu()
    image = (means.gather(1, flat) + stds.gather(1, flat) * torch.randn(flat.shape, generator=generator))
    image = image.reshape(b, 1, h, w)

    coarse = torch.randn(b, 1, ranges.bias_field_grid, ranges.bias_field_grid, generator=generator)
    bias = F.interpolate(coarse * ranges.bias_field_std, size=(h, w), mode="bicubic", align_corners=True).exp()
    image = image * bias

    sigma = _uniform(*ranges.blur_sigma, (b, 1), generator).clamp_min(1e-3).repeat(1, 2)
    kernel = 2 * int(3 * max(ranges.blur_sigma[1], 1e-3) + 0.5) + 1
    image = kornia.filters.gaussian_blur2d(image, (kernel, kernel), sigma, border_type="constant")

    image = image.clamp_min(0) / image.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    gamma = (torch.randn(b, generator=generator) * ranges.gamma_log_std).exp()
    image = kornia.enhance.adjust_gamma(image, gamma)
    noise = _uniform(*ranges.noise_std, (b, 1, 1, 1), generator)
    image = image + noise * torch.randn(image.shape, generator=generator)
    return normalise_foreground(image, labels.cpu() != 0).to(labels.device)


def normalise_foreground(images: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Each image's foreground percentile window to [-1, 1], clipped; background exactly -1."""
    out = torch.full_like(images, BACKGROUND)
    for i in range(len(images)):
        mask = foreground[i]
        if not mask.any():
            continue
        values = images[i, 0][mask]
        low, high = torch.quantile(values, torch.tensor(NORMALISE_PERCENTILES))
        scaled = ((values - low) / (high - low).clamp_min(1e-6) * 2 - 1).clamp(-1, 1)
        out[i, 0][mask] = scaled
    return out


@dataclass(frozen=True)
class RandomizedRender:
    """`render` for src/training/segmentation.py's fit_segmenter: `randomized_images` of each batch's label
    crops. A class rather than a closure so that a training process (src/evaluation/downstream.py) can be sent
    it."""
    n_tissues: int
    ranges: RandomizationConfig

    def __call__(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return randomized_images(labels, self.n_tissues, self.ranges, generator)
