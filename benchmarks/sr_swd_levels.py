"""Where the SR models' SWD comes from: per pyramid level, and how much of it is the background.

Scores the pipeline's own SR models (pipeline/train_sr_psnr/g_psnr.pt, pipeline/train_sr/g_gan.pt) on the
**val** split with evaluate's SWD settings (Laplacian pyramid 128 -> 16 px, 7x7 patches, 128 per image,
512 directions, seed 0; x1e3), against HR. Besides naive, PSNR model and GAN it scores controls that
bound what a generator could gain:

- `<model>_true_background`: the model's output with every pixel where HR is background (exactly -1 after
  prepare's window, 72 % of a demo slice) set to -1. What the model would score if its background were as
  flat as HR's: the share of its SWD that is background ripple (Gibbs ringing of the k-space LR that the
  data-consistency layer keeps in the measured band, which only an exact high band can cancel).
- `<model>_hr_inside_head`: the converse, HR wherever HR is not background and the model's output in the
  background: what a generator that keeps this model's background would score if everything inside the
  head were exact. Its ratio to the PSNR model is the floor that work inside the head alone can reach.
- `<model>_flat_far_air`: only the air at least FAR_AIR_PX px from the head (every HR pixel within that distance
  is background) set to -1: how much of the SWD is a faint signal in the air, away from any edge whose
  ringing could excuse it. Beside it, `far_air` reports per model the share of those pixels above -1 + 1e-3 and
  their mean height above -1.
- `hr_plus_noise_0.02`: HR with Gaussian noise of std 0.02 ([-1, 1] scale): how sensitive the finest
  level is to a faint texture the eye does not see.

Inside the head it also reports, per band of the Laplacian pyramid (kornia's binomial one, the filter SWD's
levels use), each model's band energy against HR's (RMS ratio) and its correlation with HR's band: whether what
is left between a model and HR in a band is missing energy, which a discriminator can see, or misplaced detail at
HR's energy, a regression error that a patch-wise discriminator cannot tell from HR.

Every mean carries a 95 % bootstrap interval over val slices (evaluate's shifted percentile interval for
set distances), and the ratios to the PSNR model are paired (same resampled slices).

    python -m benchmarks.sr_swd_levels            # writes benchmarks/sr_swd_levels.json, prints the table
    python -m benchmarks.sr_swd_levels --table

Val only: it explains a test-split figure, it does not choose one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.transform import build_laplacian_pyramid

from benchmarks.recorded import measure_or_print
from src.data.prepared import PREPARED, load_meta, load_split
from src.evaluation.intervals import Resamples
from src.metrics.bootstrap import shifted_percentile_interval
from src.metrics.distribution import resampled_sliced_wasserstein, sliced_wasserstein_distance
from src.training.inference import predict
from src.training.runtime import make_runtime
from src.training.sr_models import load_sr_generator

RESULTS = Path("benchmarks/sr_swd_levels.json")
MODELS = {"psnr_model": Path("pipeline/train_sr_psnr/g_psnr.pt"), "gan_model": Path("pipeline/train_sr/g_gan.pt")}
NOISE_STD = 0.02
FAR_AIR_PX = 4
SEED = 0


def outputs_on(split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(HR, {name: images}) of the models and controls on `split`, all (n, 1, H, W) in [-1, 1]."""
    meta = load_meta(PREPARED / "sr" / "meta.json")
    scale, degradation, background = int(meta["scale"]), meta["degradation"], float(meta["background"])
    data = load_split(PREPARED / "sr" / split, ("lr", "hr", "naive"))
    hr_img = data["hr"]
    runtime = make_runtime("cpu", False)  # fp32: the figures must not depend on the CPU's bf16 support
    outputs = {"naive": data["naive"].clamp(-1, 1)}
    for name, path in MODELS.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; run `dvc repro evaluate_sr` first")
        g = load_sr_generator(path, scale, degradation, expected=None)
        outputs[name] = predict(g, data["lr"], runtime).clamp(-1, 1)
    is_background = hr_img <= background
    for name in ("naive", *MODELS):
        outputs[f"{name}_true_background"] = torch.where(is_background, torch.full_like(hr_img, background),
                                                         outputs[name])
    for name in MODELS:
        outputs[f"{name}_hr_inside_head"] = torch.where(is_background, outputs[name], hr_img)
    far = far_air(hr_img, background)
    for name in MODELS:
        outputs[f"{name}_flat_far_air"] = torch.where(far, torch.full_like(hr_img, background), outputs[name])
    noise = torch.randn(hr_img.shape, generator=torch.Generator().manual_seed(SEED))
    outputs[f"hr_plus_noise_{NOISE_STD}"] = (hr_img + NOISE_STD * noise).clamp(-1, 1)
    return hr_img, outputs


def far_air(hr_img: torch.Tensor, background: float = -1.0) -> torch.Tensor:
    """Pixels whose every HR neighbour within FAR_AIR_PX px (a square) is background."""
    window = 2 * FAR_AIR_PX + 1
    return -F.max_pool2d(-(hr_img <= background).float(), window, stride=1, padding=FAR_AIR_PX) >= 1


def far_air_residue(hr_img: torch.Tensor, images: torch.Tensor) -> dict:
    """In the far air: the share of pixels above -1 + 1e-3, and their mean height above -1."""
    values = images[far_air(hr_img)] + 1
    return {"share_above_1e-3": round(float((values > 1e-3).float().mean()), 4),
            "mean_height": round(float(values.mean()), 5)}


def band_statistics(hr_img: torch.Tensor, images: torch.Tensor, levels: int = 3) -> dict:
    """Per pyramid band, over the band's pixels wholly inside the head (HR above background in every HR pixel the
    band pixel covers): RMS(images' band) / RMS(HR's band), and the correlation of the two bands."""
    inside = (hr_img > -1).float()
    hr_bands, bands = build_laplacian_pyramid(hr_img, levels + 1), build_laplacian_pyramid(images, levels + 1)
    result = {}
    for level in range(levels):
        mask = F.interpolate(inside, size=bands[level].shape[-2:], mode="area") >= 1.0
        real, fake = hr_bands[level][mask], bands[level][mask]
        rms_real, rms_fake = real.square().mean().sqrt(), fake.square().mean().sqrt()
        result[f"level_{hr_img.shape[-1] >> level}px"] = {
            "rms_over_hr": round(float(rms_fake / rms_real), 4),
            "correlation_with_hr": round(float((real * fake).mean() / (rms_real * rms_fake)), 4)}
    return result


def measure(split: str = "val") -> dict:
    hr_img, outputs = outputs_on(split)
    n = len(hr_img)
    draws = Resamples.draw(n, 1000, 200, SEED)
    rows = np.concatenate([np.arange(n)[None], draws.sets])
    means = resampled_sliced_wasserstein(outputs, hr_img, rows, seed=SEED)
    result = {"split": split, "n_slices": n,
              "background_fraction": round(float((hr_img <= -1).float().mean()), 4), "sets": {}}
    for name, images in outputs.items():
        levels = sliced_wasserstein_distance(images, hr_img, seed=SEED)
        low, high = shifted_percentile_interval(float(means[name][0]), means[name][1:])
        entry = {"levels": {k: round(v, 2) for k, v in levels.items() if k != "mean"},
                 "mean": {"value": round(float(means[name][0]), 3), "ci95": [round(low, 3), round(high, 3)]}}
        if name != "psnr_model":
            ratio = means[name] / means["psnr_model"]
            low, high = shifted_percentile_interval(float(ratio[0]), ratio[1:])
            entry["over_psnr_model"] = {"value": round(float(ratio[0]), 4), "ci95": [round(low, 4), round(high, 4)]}
        result["sets"][name] = entry
    # The generator's own ceiling with a perfectly flat background, against the PSNR model as it is (the
    # target's denominator) and against the PSNR model given the same flat background.
    both_flat = means["gan_model_true_background"] / means["psnr_model_true_background"]
    low, high = shifted_percentile_interval(float(both_flat[0]), both_flat[1:])
    result["gan_over_psnr_model_both_true_background"] = {"value": round(float(both_flat[0]), 4),
                                                          "ci95": [round(low, 4), round(high, 4)]}
    result["inside_head_bands"] = {name: band_statistics(hr_img, outputs[name]) for name in ("naive", *MODELS)}
    result["far_air"] = {"fraction_of_pixels": round(float(far_air(hr_img).float().mean()), 4),
                         **{name: far_air_residue(hr_img, outputs[name]) for name in ("naive", *MODELS)}}
    result["machine"] = {"load_avg_1min": round(os.getloadavg()[0], 2)}
    return result


def table(result: dict) -> str:
    sets = result["sets"]
    level_names = list(next(iter(sets.values()))["levels"])
    header = f"{'set':32s} " + " ".join(f"{name.removeprefix('level_'):>8s}" for name in level_names)
    lines = [f"SWD x1e3 to HR on {result['split']} ({result['n_slices']} slices; background "
             f"{result['background_fraction']:.0%} of pixels)",
             header + f" {'mean [95 % CI]':>24s} {'/ PSNR model [95 % CI]':>26s}"]
    for name, entry in sets.items():
        mean = entry["mean"]
        ratio = entry.get("over_psnr_model")
        ratio_text = f"{ratio['value']:.3f} [{ratio['ci95'][0]:.3f},{ratio['ci95'][1]:.3f}]" if ratio else "1"
        lines.append(f"{name:32s} " + " ".join(f"{entry['levels'][k]:8.2f}" for k in level_names)
                     + f" {mean['value']:8.2f} [{mean['ci95'][0]:.2f},{mean['ci95'][1]:.2f}]"
                     + f" {ratio_text:>26s}")
    both = result["gan_over_psnr_model_both_true_background"]
    lines.append(f"GAN / PSNR model, both with HR's background: {both['value']:.3f} "
                 f"[{both['ci95'][0]:.3f},{both['ci95'][1]:.3f}]")
    if "far_air" in result:
        air = result["far_air"]
        lines.append(f"air >= {FAR_AIR_PX} px from the head ({air['fraction_of_pixels']:.0%} of pixels): share above "
                     f"-1 + 1e-3, mean height above -1: " + "; ".join(
                         f"{name} {a['share_above_1e-3']:.2f}, {a['mean_height']:.4f}"
                         for name, a in air.items() if name != "fraction_of_pixels"))
    lines.append("inside the head, per band: RMS / HR's, correlation with HR's")
    for name, bands in result.get("inside_head_bands", {}).items():
        lines.append(f"{name:32s} " + "  ".join(f"{level.removeprefix('level_')}: {b['rms_over_hr']:.3f}, "
                                                  f"{b['correlation_with_hr']:.3f}" for level, b in bands.items()))
    return "\n".join(lines)


def main() -> int:
    return measure_or_print(__doc__, RESULTS, lambda: measure("val"), table, threads=1, indent=2)


if __name__ == "__main__":
    sys.exit(main())
