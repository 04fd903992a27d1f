"""SR ablation: train_sr variants trained in-process on the prepared data, scored on val (or test).

Each run is the SR stages' own code (`src.train_sr_psnr.train_psnr`, then `src.train_sr.train` from its model)
with params.yaml plus overrides, writing to a scratch folder instead of pipeline/; the saved g_psnr.pt / g_gan.pt
are loaded back with evaluate's loader and scored on the chosen split: PSNR (border crop =
scale, data range 2.0), SWD to HR (x1e3, evaluate's SWD settings), each with a 95 % paired
bootstrap interval over the split's slices, and the paired GAN/PSNR-model SWD ratio.
Results are merged by run name into benchmarks/sr_ablation.json, and the table is printed.

    python -m benchmarks.sr_ablation RUN [RUN ...] [--split val|test]   # named runs below
    python -m benchmarks.sr_ablation --name my_run --set train.sr.lambda_adv=0.02 [--set ...]
    python -m benchmarks.sr_ablation --table                             # print the recorded table

Choose on val; test is for confirming the final choice and for the DiffAugment ablation.
Wall times are those of a shared 2-core CPU: the load average is recorded beside each.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from src.config import params_from_dict
from src.data.prepared import PREPARED, load_meta, load_split, split_digest
from src.evaluation.intervals import Resamples, Statistic
from src.training.sr_models import load_sr_generator
from src.metrics.bootstrap import shifted_percentile_interval
from src.metrics.distribution import resampled_sliced_wasserstein, sliced_wasserstein_distance
from src.metrics.image_quality import psnr
from src.training.inference import predict
from src.training.provenance import SR_PSNR_KEYS
from src.training.runtime import make_runtime

RESULTS = Path("benchmarks/sr_ablation.json")
DATA_RANGE = 2.0
SHORT = {"train.sr.psnr_steps": 1200, "train.sr.gan_steps": 320}   # screening budget (half the old default)
SHORT_PSNR = {"train.sr.psnr_steps": 1200, "train.sr.gan_steps": 0}  # phase-1 screens: the PSNR model only
LOW_DATA = {"data.train_fraction": 0.1}
ESRGAN = {"train.sr.lambda_pixel": 0.01, "train.sr.lambda_percep": 1.0}   # ESRGAN's GAN-stage weights
# The values the screens were run with where the defaults have since moved, so a re-run reproduces them.
OLD_PHASE1 = {"train.sr.lr_psnr": 5.0e-4, "train.sr.warmup_steps": 0}
OLD_D = {"train.sr.lr_gan": 1.0e-4, "train.sr.d_highpass_sigma": 0.0}

# name -> overrides of params.yaml (dotted keys). The `screen_*` runs use the short budget and
# the params.yaml of their day (recorded in the JSON with their overrides: phase-1 screens before
# the GAN-phase defaults changed, GAN screens `screenB_*` on the lr 1e-3 + warm-up phase 1);
# `default` and the low-data pair run at the params.yaml budget. Ad-hoc runs (--name/--set)
# are recorded the same way. Every row here ran with the 3-layer SR D (train.sr.d_layers 3, the default until
# 2026-12-05).
RUNS: dict[str, dict] = {
    # Phase 1 (PSNR model) levers, short budget, GAN phase off.
    "screen_psnr_nodc": {**SHORT_PSNR, **OLD_PHASE1, "train.sr.data_consistency": False},
    "screen_psnr_dc": {**SHORT_PSNR, **OLD_PHASE1},
    "screen_psnr_dc_lr1e-3": {**SHORT_PSNR, "train.sr.lr_psnr": 1.0e-3, "train.sr.warmup_steps": 100},
    # 4 blocks x 44 channels: equal trunk FLOPs, but 1.6x the whole generator's (upsampling convs grow as ch^2)
    "screen_psnr_dc_wide": {**SHORT_PSNR, **OLD_PHASE1, "train.sr.g_blocks": 4, "train.sr.g_channels": 44},
    "screen_psnr_dc_crop128": {**SHORT_PSNR, **OLD_PHASE1, "train.sr.crop_size": 128, "train.sr.batch_size": 2},
    # GAN-phase levers (run with --share-psnr): ESRGAN's GAN-stage weights, then D's learning.
    "screenB_gan_esrgan_adv2e-2": {**SHORT, **ESRGAN, **OLD_D, "train.sr.lambda_adv": 2.0e-2},
    "screenB_gan_esrgan_adv2e-2_noDA": {**SHORT, **ESRGAN, **OLD_D, "train.sr.lambda_adv": 2.0e-2, "train.sr.diffaugment": ""},
    "screenB_gan_esrgan_adv2e-2_hp1": {**SHORT, **ESRGAN, **OLD_D, "train.sr.lambda_adv": 2.0e-2, "train.sr.d_highpass_sigma": 1.0},
    "screenB_gan_esrgan_adv2e-2_hp1_noDA": {**SHORT, **ESRGAN, **OLD_D, "train.sr.lambda_adv": 2.0e-2,
                                            "train.sr.d_highpass_sigma": 1.0, "train.sr.diffaugment": ""},
    # Default budget: the chosen defaults, and DiffAugment with 10 % of the train slices, with and without.
    "default": {},
    "low_data_diffaugment": {**LOW_DATA},
    "low_data_no_diffaugment": {**LOW_DATA, "train.sr.diffaugment": ""},
    # The perceptual network (issue 20): the random-init VGG19 of an offline machine against the denoising
    # autoencoder trained on the HR train crops, at the default budget from one shared PSNR model (--share-psnr).
    "percep_vgg19_random": {"train.sr.perceptual_network": "vgg19"},
    "percep_hr_denoiser": {"train.sr.perceptual_network": "hr_denoiser"},
}


def override(raw: dict, overrides: dict) -> dict:
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        *path, key = dotted.split(".")
        section = raw
        for name in path:
            section = section[name]
        if key not in section:
            raise KeyError(f"{dotted}: not a params.yaml key")
        section[key] = value
    return raw


def stat_dict(stat: Statistic) -> dict:
    low, high = stat.interval()
    return {"value": round(stat.value, 4), "ci95": [round(low, 4), round(high, 4)]}


def score(out: Path, split: str, seed: int, runtime) -> dict:
    """PSNR and SWD of naive / PSNR model / GAN on `split`, with paired 95 % intervals."""
    meta = load_meta(PREPARED / "sr" / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    data = load_split(PREPARED / "sr" / split, ("lr", "hr", "naive"))
    hr_img = data["hr"]
    outputs = {"naive": data["naive"].clamp(-1, 1)}
    for name, file in (("psnr_model", "g_psnr.pt"), ("gan_model", "g_gan.pt")):
        g = runtime.place(load_sr_generator(out / file, scale, degradation, expected=None))
        outputs[name] = predict(g, data["lr"], runtime).clamp(-1, 1)
    draws = Resamples.draw(len(hr_img), 1000, 200, seed)
    rows = np.concatenate([np.arange(len(hr_img))[None], draws.sets])
    swd = resampled_sliced_wasserstein(outputs, hr_img, rows, descriptors_per_image=128, n_directions=512, seed=seed)
    per_slice = {m: psnr(o, hr_img, data_range=DATA_RANGE, crop_border=scale).numpy() for m, o in outputs.items()}
    psnr_stat = {m: Statistic(float(v.mean()), v[draws.slices].mean(1), len(v)) for m, v in per_slice.items()}
    swd_stat = {m: Statistic(float(v[0]), v[1:], len(hr_img), set_level=True) for m, v in swd.items()}
    ratio = swd["gan_model"] / swd["psnr_model"]
    result = {m: {"psnr_db": stat_dict(psnr_stat[m]), "swd": stat_dict(swd_stat[m])} for m in outputs}
    # Where along the pyramid a change acts: the k-space LR keeps frequencies below 1/8 cycle per HR px, so the
    # 128- and 64-px levels (about 1/4-1/2 and 1/8-1/4) are mostly the generator's own (point values, same patches and
    # directions as the mean).
    for m, images in outputs.items():
        levels = sliced_wasserstein_distance(images, hr_img, descriptors_per_image=128, n_directions=512, seed=seed)
        result[m]["swd_levels"] = {k: round(v, 2) for k, v in levels.items() if k != "mean"}
    result["psnr_model_minus_naive_db"] = stat_dict(psnr_stat["psnr_model"] - psnr_stat["naive"])
    result["gan_minus_naive_db"] = stat_dict(psnr_stat["gan_model"] - psnr_stat["naive"])
    # A ratio of set distances: its interval is shifted by the resampling bias, as evaluate's SWD intervals.
    low, high = shifted_percentile_interval(float(ratio[0]), ratio[1:])
    result["gan_swd_over_psnr_model_swd"] = {"value": round(float(ratio[0]), 4), "ci95": [round(low, 4), round(high, 4)]}
    return result


SHARED_PSNR = Path(tempfile.gettempdir()) / "sr_ablation_psnr_phase"


def psnr_model(params, raw: dict, shared: bool, scratch: Path) -> Path:
    """g_psnr.pt of stage train_sr_psnr's own code for these params: trained into `scratch`, or (shared) once per
    PSNR-phase config and kept under /tmp, for GAN screens that differ only in GAN-phase keys."""
    from src.train_sr_psnr import train_psnr
    if shared:
        key = {"seed": raw["seed"], "data": raw["data"], "sr": {k: raw["train"]["sr"][k] for k in SR_PSNR_KEYS},
               "train_data": split_digest(PREPARED / "sr" / "train")}
        folder = SHARED_PSNR / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    else:
        folder = scratch / "psnr"
    if not (folder / "g_psnr.pt").exists():
        train_psnr(params, out=folder)
    return folder / "g_psnr.pt"


def run(name: str, overrides: dict, splits: tuple[str, ...], share_psnr: bool = False) -> dict:
    raw = override(yaml.safe_load(Path("params.yaml").read_text()), overrides)
    params = params_from_dict(raw)
    from src.train_sr import train  # imported here: the stage module sets up nothing at import, but keep it local
    with tempfile.TemporaryDirectory(prefix=f"sr_ablation_{name}_") as tmp:
        out = Path(tmp) / "gan"
        load_before = os.getloadavg()[0]
        start = time.perf_counter()  # a shared PSNR model's training is not in this run's wall time
        g_psnr = psnr_model(params, raw, share_psnr, Path(tmp))
        summary = train(params, out=out, psnr_model=g_psnr)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        shutil.copy(g_psnr, out / "g_psnr.pt")  # `score` reads both models from one folder
        runtime = make_runtime(params.train.device, False)   # scores in fp32, as evaluate's metrics
        result = {split: score(out, split, params.seed, runtime) for split in splits}
    cfg = params.train.sr
    return {"name": name, "splits": list(splits), "overrides": overrides, "shared_psnr_phase": share_psnr,
            "steps": {"psnr": cfg.psnr_steps, "gan": cfg.gan_steps},
            "train_wall_s": round(wall, 1), "load_avg_1min": [round(load_before, 2), round(load_after, 2)],
            "val_summary": {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)},
            **result}   # one entry per split


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def interval(entry: dict, digits: int) -> str:
    low, high = entry["ci95"]
    return f"{entry['value']:.{digits}f} [{low:.{digits}f},{high:.{digits}f}]"


def print_table(results: dict) -> None:
    header = (f"{'run':28} {'split':5} {'steps':>9} {'wall s':>6} {'load':>9} | {'PSNR model - naive dB':>22} "
              f"{'GAN - naive dB':>20} | {'SWD PSNR model':>20} {'SWD GAN':>20} {'GAN/PSNR SWD':>19}")
    print(header)
    print("-" * len(header))
    for r in results.values():
        steps = f"{r['steps']['psnr']}+{r['steps']['gan']}"
        load = "/".join(f"{x:.1f}" for x in r["load_avg_1min"])
        for split in r["splits"]:
            m = r[split]
            print(f"{r['name']:28} {split:5} {steps:>9} {r['train_wall_s']:>6} {load:>9} | "
                  f"{interval(m['psnr_model_minus_naive_db'], 2):>22} {interval(m['gan_minus_naive_db'], 2):>20} | "
                  f"{interval(m['psnr_model']['swd'], 1):>20} {interval(m['gan_model']['swd'], 1):>20} "
                  f"{interval(m['gan_swd_over_psnr_model_swd'], 3):>19}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help=f"named runs: {', '.join(RUNS)}")
    parser.add_argument("--test", action="store_true", help="score on test as well as val (final choice, ablation)")
    parser.add_argument("--name", help="name of an ad-hoc run given by --set")
    parser.add_argument("--set", action="append", default=[], help="dotted.key=value (YAML value) for --name")
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    parser.add_argument("--share-psnr", action="store_true",
                        help="GAN screens: start phase 2 from one shared phase-1 checkpoint (only phase-2 keys may differ)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("SR_ABLATION_THREADS", torch.get_num_threads())))
    todo = {name: RUNS[name] for name in args.runs}
    if args.table:
        print_table(load_results())
        return
    if args.name:
        todo[args.name] = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for name, overrides in todo.items():
        result = run(name, overrides, ("val", "test") if args.test else ("val",), args.share_psnr)
        results = load_results()   # re-read: another process may have added runs meanwhile
        results[name] = result
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print_table(load_results())


if __name__ == "__main__":
    main()
