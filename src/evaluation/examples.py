"""The example grids of `evaluate` (pipeline/evaluate/examples/*.png): a few test slices per task."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch

from src.training.samples import grid, overlay_labels


def error_colormap(maps: torch.Tensor, vmax: float) -> np.ndarray:
    """(N, 1, H, W) non-negative maps -> (N, H, W, 3) uint8 with a perceptual colour map."""
    cmap = matplotlib.colormaps["magma"]
    normed = (maps[:, 0].numpy() / max(vmax, 1e-8)).clip(0, 1)
    return (cmap(normed)[..., :3] * 255).round().astype(np.uint8)


def sr_grid(lr_img, naive, psnr_out, gan_out, hr_img, tta_std_gan, n: int) -> np.ndarray:
    """Columns: LR | naive | PSNR model | GAN | HR | |GAN - HR| | TTA std of the GAN | |GAN - PSNR model|."""
    err_gan = (gan_out[:n] - hr_img[:n]).abs()
    hallucination = (gan_out[:n] - psnr_out[:n]).abs()
    tta = tta_std_gan[:n]
    return grid([lr_img[:n], naive[:n], psnr_out[:n], gan_out[:n], hr_img[:n],
                 error_colormap(err_gan, float(err_gan.max())), error_colormap(tta, float(tta.max())),
                 error_colormap(hallucination, float(hallucination.max()))],
                ["LR", "naive", "PSNR model", "GAN", "HR", "|GAN-HR|", "TTA std", "|GAN-PSNR|"])


def sim2real_grid(sim, translated, real, judge_labels, sim_labels, n: int) -> np.ndarray:
    """Columns: sim | translated | real (same slice) | judge's labels on translated | the simulator's labels."""
    return grid([sim[:n], translated[:n], real[:n], overlay_labels(translated[:n], judge_labels[:n]),
                 overlay_labels(sim[:n], sim_labels[:n])],
                ["sim", "translated", "real (same slice)", "judge on translated", "sim labels"])
