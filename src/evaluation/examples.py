"""The example grids of `evaluate` (pipeline/evaluate/examples/*.png): a few test slices per task."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from src.evaluation.calibration import BACKGROUND
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


def sr_calibration_grid(hr_img, output, bound, k: float, n: int) -> np.ndarray:
    """Rows = test slices. Columns: HR | output | misses (|error| > bound, foreground only) | |output - HR| |
    calibrated bound k * sigma.

    |error| and the bound share one colour scale in model units (images span [-1, 1]), drawn as a colour bar.
    The bound is calibrated on the foreground (HR > -1) only; the misses column shows it dark grey.
    Returns (H, W, 3) uint8.
    """
    hr, out = hr_img[:n, 0].numpy(), output[:n, 0].numpy()
    error, bound = np.abs(out - hr), bound[:n, 0].numpy()
    misses = np.where(hr > BACKGROUND, np.where(error > bound, 1.0, 0.3), 0.0)
    vmax = max(float(np.quantile(error, 0.995)), float(np.quantile(bound, 0.995)), 1e-3)
    fig = Figure(figsize=(9.5, 2.0 * len(error) + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(error), 5, squeeze=False)
    titles = ("HR", "PSNR model", "|error| > bound (white)", "|error|", f"bound k·σ (k = {k:.2f})")
    for row, images in enumerate(zip(hr, out, misses, error, bound)):
        for ax, image, kind in zip(axes[row], images, ("image", "image", "mask", "error", "error")):
            shown = ax.imshow(image, cmap="magma" if kind == "error" else "gray", interpolation="nearest",
                              vmin=-1.0 if kind == "image" else 0.0, vmax=vmax if kind == "error" else 1.0)
            ax.set_axis_off()
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=axes[:, 3:], shrink=0.8, label="intensity error (model units; images span [-1, 1])")
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def change_map(output: torch.Tensor, source: torch.Tensor, vmax: float) -> np.ndarray:
    """|output - source| in colour on a shared scale `vmax` (model units): black where nothing changed."""
    return error_colormap((output - source).abs(), vmax)


def sim2real_grid(renderings: dict[str, torch.Tensor], real, judge_labels, sim_labels, n: int) -> tuple[np.ndarray, float]:
    """Columns: sim | translated sim | |translated - sim| | classical | translated classical |
    |translated - classical| | real (same slice) | judge on translated classical | sim labels.

    Both change maps share one colour scale, returned with the grid (the report prints it).
    """
    sim, classical = renderings["raw_sim"][:n], renderings["classical"][:n]
    from_sim, from_classical = renderings["translated_sim"][:n], renderings["translated_classical"][:n]
    vmax = max(float((from_sim - sim).abs().max()), float((from_classical - classical).abs().max()), 1e-3)
    image = grid([sim, from_sim, change_map(from_sim, sim, vmax), classical, from_classical,
                  change_map(from_classical, classical, vmax), real[:n],
                  overlay_labels(from_classical, judge_labels[:n]), overlay_labels(sim, sim_labels[:n])],
                 ["sim", "translated sim", f"|change| (max {vmax:.2f})", "classical", "translated classical",
                  f"|change| (max {vmax:.2f})", "real (same slice)", "judge on translated", "sim labels"])
    return image, vmax
