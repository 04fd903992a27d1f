"""Split-conformal calibration of the SR uncertainty maps: one scale k per model, fitted on val, checked on test.

The dihedral TTA spread sigma (src/metrics/uncertainty.py) ranks pixels by how unstable the
output is, but its scale means nothing: it is a spread, not an error. Split-conformal
calibration turns it into an error bound: on the val split, k is the conformal quantile of
|output - HR| / sigma over the foreground pixels (HR > -1, the background value), so that
|error| <= k * sigma holds for at least TARGET_COVERAGE of them; the test split then says
whether the bound holds on slices the fit never saw. The guarantee needs val and test
pixels to be exchangeable; here the splits are different slabs of one volume, so the test
coverage is a measurement, not a promise.

Every number is an Estimate with a 95 % bootstrap interval: k over resampled val slices
(k refitted on each resample), coverages and means pooled over the pixels of resampled
slices, Spearman rho per slice averaged over resampled slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from src.evaluation import schema
from src.evaluation.intervals import Resamples, Statistic, estimates, mean_statistic, pooled_statistic
from src.metrics.bootstrap import resample_indices
from src.metrics.uncertainty import (conformal_quantile, normalized_scores, reliability_bins, spearman_correlation,
                                     within_bound)

TARGET_COVERAGE = 0.9
FOREGROUND = "HR > -1 (the background value after prepare's intensity window)"
SIGMA = ("the model's own dihedral TTA spread: population std of its 8 outputs over flips and 90-degree rotations "
         "of the LR input (src/metrics/uncertainty.py dihedral_tta), model units")
BACKGROUND = -1.0          # HR value of the background after prepare's intensity window
SIGMA_FLOOR = 1.0e-4       # model units: a pixel with TTA spread 0 gets this spread, so its score stays finite
RELIABILITY_BINS = 10
TOP_ERROR_FRACTION = 0.10  # error detection: the bound flags the 10 % largest-error foreground pixels of a slice
CALIBRATION_STREAM = 1     # bootstrap stream of the val resamples (stream 0 draws the test slices)


@dataclass(frozen=True)
class SplitMaps:
    """One model on one split: |output - HR| and its uncertainty map sigma, both (n, 1, H, W) in model units,
    and the foreground mask (HR > BACKGROUND) they are judged on."""
    abs_error: np.ndarray
    sigma: np.ndarray
    foreground: np.ndarray

    @classmethod
    def of(cls, output: torch.Tensor, hr_img: torch.Tensor, sigma: torch.Tensor) -> SplitMaps:
        if not output.shape == hr_img.shape == sigma.shape:
            raise ValueError(f"output, HR and sigma must have one shape, got {tuple(output.shape)}, "
                             f"{tuple(hr_img.shape)}, {tuple(sigma.shape)}")
        foreground = (hr_img > BACKGROUND).numpy()
        if not foreground.any(axis=(1, 2, 3)).all():
            raise ValueError("every slice needs foreground pixels (HR > -1) to calibrate on")
        return cls((output - hr_img).abs().numpy().astype(np.float64), sigma.numpy().astype(np.float64), foreground)

    def scores(self) -> list[np.ndarray]:
        """Per slice, the nonconformity scores |error| / max(sigma, floor) of its foreground pixels."""
        return [normalized_scores(e[m], s[m], SIGMA_FLOOR)
                for e, s, m in zip(self.abs_error, self.sigma, self.foreground)]

    def bound(self, k: float) -> np.ndarray:
        """The calibrated error bound k * max(sigma, floor), (n, 1, H, W), model units."""
        return k * np.maximum(self.sigma, SIGMA_FLOOR)


@dataclass(frozen=True)
class Calibrated:
    """The fitted k with the statistics of its bound on val and test, and the reliability bins on test."""
    k: float
    statistics: dict[str, Statistic]
    reliability: list[dict[str, float]]
    test_bound: np.ndarray


def fit_scale(val: SplitMaps, level: float = TARGET_COVERAGE) -> float:
    """k such that |error| <= k * sigma holds for at least `level` of the val foreground pixels (split-conformal)."""
    return conformal_quantile(np.concatenate(val.scores()), 1 - level)


def resampled_scales(per_slice_scores: list[np.ndarray], indices: np.ndarray, level: float) -> np.ndarray:
    """k refitted on each resample of calibration slices: (B,) from (B, n) slice indices."""
    return np.array([conformal_quantile(np.concatenate([per_slice_scores[i] for i in row]), 1 - level)
                     for row in indices])


def covered_counts(maps: SplitMaps, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Per slice: (foreground pixels with |error| <= k * sigma, foreground pixels)."""
    covered = within_bound(maps.abs_error, maps.sigma, k, SIGMA_FLOOR) & maps.foreground
    return covered.sum(axis=(1, 2, 3)).astype(np.float64), maps.foreground.sum(axis=(1, 2, 3)).astype(np.float64)


def foreground_spearman(maps: SplitMaps, seed: int) -> np.ndarray:
    """(n,) Spearman rho of sigma with |error| on each slice's foreground pixels (k > 0 does not change ranks)."""
    return np.array([spearman_correlation(s[m], e[m], seed=seed)
                     for s, e, m in zip(maps.sigma, maps.abs_error, maps.foreground)])


def error_detection_auroc(maps: SplitMaps, top_fraction: float = TOP_ERROR_FRACTION) -> np.ndarray:
    """(n,) per slice: ROC AUC of the bound k * max(sigma, floor) as a detector of the foreground pixels whose
    |error| is among the slice's `top_fraction` largest (k > 0 does not change ranks, so k is not needed).

    The figure a user acts on: how well "review where the bound is large" finds the worst pixels. 0.5 is a
    bound that knows nothing. torchmetrics' binary_auroc (ties count half).
    """
    aurocs = []
    for s, e, m in zip(maps.sigma, maps.abs_error, maps.foreground):
        errors = e[m]
        worst = errors >= np.quantile(errors, 1 - top_fraction)
        if worst.all():  # a constant error leaves nothing to separate
            aurocs.append(np.nan)
            continue
        score = torch.from_numpy(np.maximum(s[m], SIGMA_FLOOR))
        aurocs.append(binary_auroc(score, torch.from_numpy(worst.astype(np.int64))).item())
    return np.array(aurocs)


def calibrate(val: SplitMaps, test: SplitMaps, val_draws: np.ndarray, test_draws: Resamples, seed: int,
              level: float = TARGET_COVERAGE) -> Calibrated:
    """Fit k on `val`, measure its bound on val and `test`.

    val_draws: (B, n_val) resampled val slice indices; test_draws: the test set's shared draws.
    Statistics (keys of schema.CALIBRATION): k_scale (n = val slices), coverage_val, coverage_test,
    spearman_foreground and error_detection_auroc (test, per slice, averaged), mean_bound and mean_abs_error
    (test foreground, model units).
    """
    k = fit_scale(val, level)
    val_scores = val.scores()
    k_stat = Statistic(k, resampled_scales(val_scores, val_draws, level), len(val_scores))
    bound = test.bound(k)
    fg_count = test.foreground.sum(axis=(1, 2, 3)).astype(np.float64)
    statistics = {
        "k_scale": k_stat,
        "coverage_val": pooled_statistic(*covered_counts(val, k), val_draws),
        "coverage_test": pooled_statistic(*covered_counts(test, k), test_draws.slices),
        "spearman_foreground": mean_statistic(foreground_spearman(test, seed), test_draws.slices),
        "error_detection_auroc": mean_statistic(error_detection_auroc(test), test_draws.slices),
        "mean_bound": pooled_statistic((bound * test.foreground).sum(axis=(1, 2, 3)), fg_count, test_draws.slices),
        "mean_abs_error": pooled_statistic((test.abs_error * test.foreground).sum(axis=(1, 2, 3)), fg_count,
                                           test_draws.slices),
    }
    reliability = reliability_bins(bound[test.foreground], test.abs_error[test.foreground], RELIABILITY_BINS, level)
    return Calibrated(k, statistics, reliability, bound)


def val_draws(n_val: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_val) resampled val slice indices, independent of the test draws of the same seed."""
    return resample_indices(n_val, resamples, seed, stream=CALIBRATION_STREAM)


def section(calibrated: dict[str, Calibrated], n_val: int) -> schema.Calibration:
    """metrics.json's sr.calibration: the protocol of the fit and one row of schema.CALIBRATION per model."""
    return schema.Calibration(target_coverage=TARGET_COVERAGE, calibration_split="val", n_val=n_val,
                              foreground=FOREGROUND, sigma=SIGMA, sigma_floor=SIGMA_FLOOR,
                              **{m: estimates(c.statistics) for m, c in calibrated.items()})
