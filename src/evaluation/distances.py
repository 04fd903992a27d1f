"""SWD, KID and Fréchet distance of image sets to a reference set, with their bootstrap resamples."""

from __future__ import annotations

import numpy as np
import torch

from src.config import EvaluateConfig
from src.evaluation.intervals import Resamples, Statistic
from src.evaluation.schema import INCEPTION_SPACE, distance_keys
from src.metrics.distribution import (kernel_distance, resampled_frechet_distances, resampled_kernel_distances,
                                      resampled_sliced_wasserstein)
from src.metrics.features import EncoderFeatures, InceptionFeatures, extract_features
from src.training.runtime import Runtime


class DistanceMetrics:
    """Distribution distances in one named feature space (`space`: "inception_fid" makes them FID/KID).

    extractor: a module mapping (B, 1, H, W) images in [-1, 1] to (B, D) features, on runtime's
    device. Features and SWD patch descriptors are computed once per image; each resample of
    `Resamples.sets` re-indexes them, so the set distances get intervals for seconds of work.
    """

    def __init__(self, extractor: torch.nn.Module, space: str, settings: EvaluateConfig, seed: int, runtime: Runtime):
        self.extractor, self.space, self.settings, self.seed, self.runtime = extractor, space, settings, seed, runtime
        self.swd_args = dict(descriptors_per_image=settings.swd_descriptors_per_image,
                             n_directions=settings.swd_directions, seed=seed)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return extract_features(self.extractor, images.clamp(-1, 1), self.settings.batch_size, self.runtime.device)

    def statistics(self, sets: dict[str, torch.Tensor], reference: torch.Tensor,
                   draws: Resamples) -> dict[str, dict[str, Statistic]]:
        """{set name: {"swd": ..., kid key: ..., fd key: ...}}: each set against `reference`.

        sets: {name: (n, 1, H, W)}, reference (n, 1, H, W), image j of each from test slice j.
        """
        kid_key, fd_key = distance_keys(self.space)
        sets = {name: images.clamp(-1, 1) for name, images in sets.items()}
        reference = reference.clamp(-1, 1)
        reference_features = self.features(reference)
        # Row 0 is the identity resample: the SWD and FD estimates come from the same computation
        # as their resamples (the whole-set SWD is not recomputed, and FD shares the Gram-matrix route).
        rows = np.concatenate([np.arange(len(reference))[None], draws.sets])
        swd = resampled_sliced_wasserstein(sets, reference, rows, **self.swd_args)
        out = {}
        for name, images in sets.items():
            features = self.features(images)
            # KID keeps its subset estimator (Binkowski et al.), which equals the whole-set value when
            # n <= kid_subset_size, as on the demo's 14 slices.
            kid, _ = kernel_distance(features, reference_features, self.settings.kid_subsets,
                                     self.settings.kid_subset_size, self.seed)
            fd = resampled_frechet_distances(features, reference_features, rows)
            out[name] = {
                "swd": Statistic(float(swd[name][0]), swd[name][1:], len(images), set_level=True),
                kid_key: Statistic(kid, resampled_kernel_distances(features, reference_features, draws.sets),
                                   len(images), set_level=True),
                fd_key: Statistic(float(fd[0]), fd[1:], len(images), set_level=True),
            }
        return out


def feature_space(inception_file, judge: torch.nn.Module) -> tuple[torch.nn.Module, str, str]:
    """(feature extractor, space name, backbone note) of the set distances.

    The FID Inception when its weights file exists (`inception_file`, a path or None); otherwise not FID:
    the Fréchet/kernel distances live in the judge U-Net's encoder space and are named for it
    (`kid_judge_unet_encoder`, `fd_judge_unet_encoder`), never reported as FID/KID.
    """
    if inception_file is not None:
        return InceptionFeatures(inception_file), INCEPTION_SPACE, "inception_fid"
    return (EncoderFeatures(judge.encoder, "judge_unet_encoder"), "judge_unet_encoder",
            "judge_unet_encoder (fallback: FID Inception weights unavailable)")
