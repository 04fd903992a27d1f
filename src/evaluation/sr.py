"""Super-resolution on the test split: fidelity per slice, distances to HR, uncertainty and hallucination maps,
and the uncertainty maps calibrated on the val split (src/evaluation/calibration.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from src.data.degrade import degrade
from src.evaluation import calibration
from src.evaluation.distances import DistanceMetrics
from src.evaluation.examples import sr_calibration_grid, sr_grid
from src.evaluation.intervals import Resamples, differences, estimates, mean_statistic
from src.evaluation.per_slice import slice_rows
from src.evaluation.plots import reliability_points
from src.evaluation.schema import CALIBRATED_MODELS, GAN_VS_PSNR_MODEL, PSNR_MODEL_VS_NAIVE, SR, SR_QUALITY
from src.metrics.image_quality import psnr, ssim
from src.metrics.uncertainty import dihedral_tta, spearman_correlation
from src.training.inference import predict
from src.training.runtime import Runtime

DATA_RANGE = 2.0  # model units [-1, 1]


@dataclass(frozen=True)
class SRResult:
    section: SR
    per_slice: list[dict]
    grid: np.ndarray
    calibration_grid: np.ndarray  # the PSNR model's |error| beside its calibrated bound, with a colour bar
    reliability: list[dict]       # points of plots/reliability.json


def fidelity(sr_img: torch.Tensor, hr_img: torch.Tensor, lr_img: torch.Tensor, scale: int,
             degradation: str) -> dict[str, np.ndarray]:
    """Per slice: PSNR and SSIM against HR (border crop = scale), and data consistency: the PSNR of
    the output degraded again against the LR input (GT-free: does the output explain what was measured?)."""
    return {
        "psnr_db": psnr(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).numpy(),
        "ssim": ssim(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).numpy(),
        "data_consistency_psnr_db": psnr(degrade(sr_img, scale, degradation), lr_img, data_range=DATA_RANGE).numpy(),
    }


def per_slice_spearman(maps: torch.Tensor, errors: torch.Tensor, seed: int) -> np.ndarray:
    """(n,) Spearman rank correlation of a map with |error|, each slice on its own pixels."""
    return np.array([spearman_correlation(m, e, seed=seed) for m, e in zip(maps, errors)])


def evaluate_sr(lr_img: torch.Tensor, hr_img: torch.Tensor, naive: torch.Tensor, g_psnr: torch.nn.Module,
                g_gan: torch.nn.Module, scale: int, degradation: str, runtime: Runtime, distances: DistanceMetrics,
                draws: Resamples, n_examples: int, val_lr_img: torch.Tensor, val_hr_img: torch.Tensor) -> SRResult:
    """Naive upsampling, the PSNR model and the GAN on the SR test slices (n, 1, H, W) in [-1, 1]; each model's
    TTA spread calibrated into an error bound on the val slices (val_lr_img, val_hr_img)."""
    batch = distances.settings.batch_size
    outputs = {"naive": naive.clamp(-1, 1), "psnr_model": predict(g_psnr, lr_img, runtime, batch).clamp(-1, 1),
               "gan_model": predict(g_gan, lr_img, runtime, batch).clamp(-1, 1)}
    per_slice = {name: fidelity(out, hr_img, lr_img, scale, degradation) for name, out in outputs.items()}

    # Uncertainty (8-way dihedral TTA spread) and hallucination (|GAN - PSNR model|) against |error|.
    models = {"psnr_model": g_psnr, "gan_model": g_gan}
    tta = {m: dihedral_tta(lambda x, g=g: predict(g, x, runtime, batch), lr_img)[1] for m, g in models.items()}
    tta_psnr, tta_gan = tta["psnr_model"], tta["gan_model"]
    err_psnr, err_gan = ((outputs[m] - hr_img).abs() for m in ("psnr_model", "gan_model"))
    seed = distances.seed
    per_slice["psnr_model"]["tta_spearman"] = per_slice_spearman(tta_psnr, err_psnr, seed)
    per_slice["gan_model"]["tta_spearman"] = per_slice_spearman(tta_gan, err_gan, seed)
    per_slice["gan_model"]["hallucination_spearman"] = per_slice_spearman(
        (outputs["gan_model"] - outputs["psnr_model"]).abs(), err_gan, seed)

    calibrated = {}
    val_indices = calibration.val_draws(len(val_hr_img), len(draws.slices), seed)
    for m in CALIBRATED_MODELS:
        def model_fn(x, g=models[m]):
            return predict(g, x, runtime, batch)
        val_maps = calibration.SplitMaps.of(model_fn(val_lr_img).clamp(-1, 1), val_hr_img,
                                            dihedral_tta(model_fn, val_lr_img)[1])
        test_maps = calibration.SplitMaps.of(outputs[m], hr_img, tta[m])
        calibrated[m] = calibration.calibrate(val_maps, test_maps, val_indices, draws, seed)

    stats = {m: {k: mean_statistic(v, draws.slices) for k, v in columns.items()} for m, columns in per_slice.items()}
    distance_stats = distances.statistics(outputs, hr_img, draws)
    rows = {m: {**{k: stats[m][k] for k in SR_QUALITY}, **distance_stats[m]} for m in outputs}
    section = SR(
        **{m: estimates(row) for m, row in rows.items()},
        uncertainty=estimates({"tta_spearman_psnr_model": stats["psnr_model"]["tta_spearman"],
                               "tta_spearman_gan_model": stats["gan_model"]["tta_spearman"],
                               "hallucination_spearman": stats["gan_model"]["hallucination_spearman"]}),
        psnr_model_vs_naive=differences(rows["psnr_model"], rows["naive"], PSNR_MODEL_VS_NAIVE),
        gan_vs_psnr_model=differences(rows["gan_model"], rows["psnr_model"], GAN_VS_PSNR_MODEL),
        calibration=calibration.section(calibrated, len(val_hr_img)),
    )
    grid = sr_grid(lr_img, outputs["naive"], outputs["psnr_model"], outputs["gan_model"], hr_img, tta_gan, n_examples)
    psnr_bound = calibrated["psnr_model"]
    calibration_grid = sr_calibration_grid(hr_img, outputs["psnr_model"], torch.from_numpy(psnr_bound.test_bound),
                                           psnr_bound.k, n_examples)
    return SRResult(section, [r for m, columns in per_slice.items() for r in slice_rows("sr", m, columns)], grid,
                    calibration_grid, reliability_points({m: c.reliability for m, c in calibrated.items()}))
