"""How well SR PSNR models of different generator families fit, on the train slices as well as on val.

Val has 14 slices from one block of the volume, and a family can look as good there as it is not elsewhere: the
clamped generator without data consistency scored +3.74 dB over naive on val, within 0.4 dB of the default's, and
+2.80 on test, 1.0 dB below it. Its train-slice fit showed that without looking at test. This benchmark trains
(or reuses, from benchmarks/sr_discriminator.py's cache under /tmp) the PSNR model (train_sr_psnr's phase 1) of
each family and reports its PSNR over the naive upsampling on the train and val slices (border crop = scale, data
range 2, whole slices, fp32), each with a 95 % bootstrap interval over slices:

- `data_consistency`: the default (the whole measured k-space band kept exactly, no clamp in training);
- `no_data_consistency`: without the projection;
- `no_data_consistency_clamped`: without it, the output clamped to [-1, 1] in training too (train.sr.clamp_output).

    python -m benchmarks.sr_fit_by_split            # writes benchmarks/sr_fit_by_split.json, prints the table
    python -m benchmarks.sr_fit_by_split --table

The train slices are what the models trained on: a gap there is a difference in fit, not in generalisation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from benchmarks.recorded import measure_or_print
from benchmarks.sr_ablation import override
from benchmarks.sr_discriminator import psnr_model
from src.data.prepared import PREPARED, load_meta, load_split
from src.metrics.bootstrap import percentile_interval, resample_indices, resampled_means
from src.metrics.image_quality import psnr
from src.training.inference import predict
from src.training.runtime import make_runtime
from src.training.sr_models import load_sr_generator

RESULTS = Path("benchmarks/sr_fit_by_split.json")
FAMILIES = {
    "data_consistency": {"train.sr.data_consistency": True, "train.sr.clamp_output": False},
    "no_data_consistency": {"train.sr.data_consistency": False, "train.sr.clamp_output": False},
    "no_data_consistency_clamped": {"train.sr.data_consistency": False, "train.sr.clamp_output": True},
}
SPLITS = ("train", "val")


def gain_over_naive(g_path: Path, split: str, seed: int) -> dict:
    meta = load_meta(PREPARED / "sr" / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    data = load_split(PREPARED / "sr" / split, ("lr", "hr", "naive"))
    g = load_sr_generator(g_path, scale, degradation, expected=None)
    sr_img = predict(g, data["lr"], make_runtime("cpu", False)).clamp(-1, 1)
    gain = (psnr(sr_img, data["hr"], data_range=2.0, crop_border=scale)
            - psnr(data["naive"].clamp(-1, 1), data["hr"], data_range=2.0, crop_border=scale)).numpy()
    low, high = percentile_interval(resampled_means(gain, resample_indices(len(gain), 1000, seed)))
    return {"n_slices": len(gain), "psnr_model_minus_naive_db": {"value": round(float(gain.mean()), 3),
                                                                 "ci95": [round(low, 3), round(high, 3)]}}


def measure() -> dict:
    base = yaml.safe_load(Path("params.yaml").read_text())
    result = {"families": {}, "machine": {"load_avg_1min": round(os.getloadavg()[0], 2)}}
    for name, changes in FAMILIES.items():
        raw = override(base, changes)
        g_path = psnr_model(raw)
        result["families"][name] = {"overrides": changes, "psnr_model": str(g_path),
                                    **{split: gain_over_naive(g_path, split, raw["seed"]) for split in SPLITS}}
    return result


def table(result: dict) -> str:
    lines = ["PSNR model - naive (dB) [95 % CI over slices]".rjust(60), f"{'family':30s} " + " ".join(
        f"{split:>24s}" for split in SPLITS)]
    for name, entry in result["families"].items():
        cells = []
        for split in SPLITS:
            e = entry[split]["psnr_model_minus_naive_db"]
            cells.append(f"{e['value']:+.2f} [{e['ci95'][0]:+.2f},{e['ci95'][1]:+.2f}]".rjust(24))
        lines.append(f"{name:30s} " + " ".join(cells))
    return "\n".join(lines)


def main() -> int:
    return measure_or_print(__doc__, RESULTS, measure, table, threads=2)


if __name__ == "__main__":
    sys.exit(main())
