"""SR discriminator diagnosis: D trained alone against the frozen PSNR model, scored on val slices it never saw.

The GAN phase of train_sr showed d/adv at 2 ln 2 (chance) throughout. This benchmark takes G
out of the game: G is frozen at the trained PSNR model (stage train_sr_psnr's code, trained once
in-process and cached under /tmp), and D is trained alone for the GAN phase's step count
(train.sr.gan_steps) on the batches the GAN phase would draw (the stage's own BatchStream at
steps psnr_steps .. psnr_steps + gan_steps), with the stage's own D builder and D update
(`src.train_sr.discriminator`, `src.training.sr_steps.d_step`: DiffAugment through
`discriminate`). D is then scored, without augmentation, on val: every val slice cut into a
fixed grid of crops of train.sr.crop_size px (HR crops against G(LR crop), as in training),
one score per crop (D's mean patch logit). Reported: balanced real/fake accuracy at D's decision
boundary and ROC AUC, each with a 95 % percentile bootstrap interval over val slices (all crops
of a slice move together). Two reference rows need no D: the untrained D, and a one-number
"detector", the crop's high-pass RMS (sharper = real), which shows how much the sharpness cue
alone separates real from fake.

    python -m benchmarks.sr_discriminator                 # every configuration in CONFIGS
    python -m benchmarks.sr_discriminator today no_da     # some of them
    python -m benchmarks.sr_discriminator --table         # print the recorded table

Rows are merged by name into benchmarks/sr_discriminator.json. Run with OMP_NUM_THREADS=1:
wall times are those of one thread on a shared 2-core machine, not budget figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.sr_ablation import interval
from src.config import params_from_dict
from src.data.prepared import PREPARED, load_meta, load_split, open_split, split_digest
from src.data.subset import train_subset
from src.training.sr_models import load_sr_generator
from src.models.discriminators import PatchDiscriminator
from src.models.highpass import HighPassDiscriminator, gaussian_highpass
from src.training.data import BatchStream, SliceCrops, paired_crop
from src.training import d_monitor
from src.training.d_monitor import N_RESAMPLES, generate, separation, val_crop_grid
from src.training.distributed import SINGLE
from src.training.gan_utils import decision_boundary
from src.training.provenance import SR_PSNR_KEYS
from src.training.runtime import make_runtime
from src.training.sr_steps import SRGanSettings, d_step

RESULTS = Path("benchmarks/sr_discriminator.json")
PSNR_CACHE = Path("/tmp/sr_discriminator_psnr")
SR_DATA = PREPARED / "sr"
# Keys of the PSNR phase: the cached PSNR model depends on these (and seed, data) only.
PHASE1_KEYS = SR_PSNR_KEYS

# name -> overrides of train.sr (and two benchmark-only D knobs: d_norm, highpass_gain).
TODAY = {"spectral_norm": True, "d_channels": 32, "d_layers": 3, "d_highpass_sigma": 1.0, "d_highpass_compress": 0.0,
         "diffaugment": "color,translation,cutout", "lr_d": 4.0e-4, "gan_loss": "nonsaturating"}
CONFIGS: dict[str, dict] = {
    "today": {},
    # DiffAugment: off, and one op at a time
    "no_da": {"diffaugment": ""},
    "da_color": {"diffaugment": "color"},
    "da_translation": {"diffaugment": "translation"},
    "da_cutout": {"diffaugment": "cutout"},
    "da_translation_cutout": {"diffaugment": "translation,cutout"},
    # spectral norm off (instance norm, junyanz's default) / off with no norm at all
    "no_sn": {"spectral_norm": False},
    "no_sn_no_norm": {"spectral_norm": False, "d_norm": "none"},
    # high-pass front end
    "hp_off": {"d_highpass_sigma": 0.0},
    "hp_0.5": {"d_highpass_sigma": 0.5},
    "hp_2.0": {"d_highpass_sigma": 2.0},
    "hp_1.0_gain16": {"highpass_gain": 16.0},
    # width and depth
    "d_channels_64": {"d_channels": 64},
    "d_layers_2": {"d_layers": 2},
    "d_layers_1": {"d_layers": 1},
    # D learning rate (TTUR: D's own lr)
    "lr_d_1e-4": {"lr_d": 1.0e-4},
    "lr_d_1e-3": {"lr_d": 1.0e-3},
    "lr_d_2e-3": {"lr_d": 2.0e-3},
    # loss
    "hinge": {"gan_loss": "hinge"},
    "lsgan": {"gan_loss": "lsgan"},
    "relativistic": {"gan_loss": "relativistic"},   # ESRGAN's RaGAN; accuracy at its own rule (above the other's mean)
    "d_layers_1_relativistic": {"d_layers": 1, "gan_loss": "relativistic"},
    # The default D since 2026-12-05's last session: one layer, its high-pass read through asinh(x / 0.01)
    "d_layers_1_compress1e-2": {"d_layers": 1, "d_highpass_compress": 0.01},
}


def psnr_model(raw: dict) -> Path:
    """g_psnr.pt of stage train_sr_psnr for these params, trained once and kept under /tmp."""
    sr = raw["train"]["sr"]
    key = {"seed": raw["seed"], "train_fraction": raw["data"]["train_fraction"], "sr": {k: sr[k] for k in PHASE1_KEYS},
           "train_data": split_digest(SR_DATA / "train")}
    folder = PSNR_CACHE / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    if not (folder / "g_psnr.pt").exists():
        from src.train_sr_psnr import train_psnr
        train_psnr(params_from_dict(raw), out=folder)
    return folder / "g_psnr.pt"


def gan_phase_batches(params, g: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(hr_img, sr_img) of every GAN-phase step: the stage's batch stream at those steps, fakes from the frozen G."""
    cfg = params.train.sr
    meta = load_meta(SR_DATA / "meta.json")
    data = open_split(SR_DATA / "train", ("lr", "naive", "hr"))
    subset = train_subset(len(data["hr"]), params.data.train_fraction, params.seed)
    stream = BatchStream(SliceCrops(data, paired_crop(int(meta["scale"]), cfg.crop_size), params.seed, subset),
                         cfg.batch_size, SINGLE, params.seed, 0, "train.sr.batch_size")
    batches = []
    with torch.no_grad():
        for step in range(cfg.psnr_steps, cfg.psnr_steps + cfg.gan_steps):
            lr_img, naive_img, hr_img = stream.batch(step)
            batches.append((hr_img, g(lr_img, naive_img)))
    return batches


def val_crops(g: torch.nn.Module, scale: int, hr_crop: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(hr_crops, sr_crops, slice_of_crop): train_sr's D-monitoring grid over every val slice; G sees the LR crop."""
    crops = val_crop_grid(load_split(SR_DATA / "val", ("lr", "naive", "hr")), scale, hr_crop)
    return crops.hr, generate(g, crops), crops.owner


def build_d(cfg: dict) -> torch.nn.Module:
    """As src.train_sr.discriminator, plus the benchmark-only norm and high-pass gain knobs."""
    d = PatchDiscriminator(1, cfg["d_channels"], cfg["d_layers"], spectral_norm=cfg["spectral_norm"],
                           norm=cfg.get("d_norm"))
    if cfg["d_highpass_sigma"] > 0:
        return HighPassDiscriminator(d, cfg["d_highpass_sigma"], gain=cfg.get("highpass_gain", 4.0),
                                     compress=cfg["d_highpass_compress"])
    return d


def train_d(cfg: dict, batches, seed: int) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(seed)
    d = build_d(cfg)
    optimizer = torch.optim.Adam(d.parameters(), lr=cfg["lr_d"], betas=tuple(cfg["betas"]))
    settings = SRGanSettings(gan_loss=cfg["gan_loss"], policy=cfg["diffaugment"], lambda_pixel=0.0, lambda_percep=0.0,
                             lambda_adv=0.0, r1_gamma=cfg["r1_gamma"], label_smoothing=cfg["label_smoothing"])
    runtime = make_runtime("cpu", False)
    log = [d_step(d, optimizer, hr_img, sr_img, settings, runtime, instance_noise=0.0) for hr_img, sr_img in batches]
    return d, log


def crop_scores(d: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """(N,) D's mean patch logit per image, no augmentation, D in eval mode (no power-iteration update)."""
    d.eval()
    return d_monitor.crop_scores(d, images)


def cpu_flags() -> dict:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return {flag: flag in flags for flag in ("avx512f", "avx512_bf16", "amx_bf16")}


def machine() -> dict:
    threads = torch.get_num_threads()
    return {"threads": threads, "note": f"threads: {threads}; screening wall times, not budget figures",
            "cpu_flags": cpu_flags(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_row(name: str, row: dict) -> None:
    results = load_results()   # re-read: rows are merged by name
    results[name] = row
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def print_table(results: dict) -> None:
    header = (f"{'config':24} {'val accuracy [95% CI]':>22} {'val AUC [95% CI]':>22} {'score real/fake':>16} "
              f"{'d/adv last 64':>13} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        v = r["val"]
        scores = f"{v['mean_score']['real']:+.2f}/{v['mean_score']['fake']:+.2f}"
        d_adv = f"{r['train']['d_adv_last64']:.3f}" if "train" in r else "-"
        print(f"{name:24} {interval(v['accuracy'], 3):>22} {interval(v['auc'], 3):>22} {scores:>16} {d_adv:>13} "
              f"{r.get('wall_s', 0):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help=f"configurations: {', '.join(CONFIGS)}")
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    args = parser.parse_args()
    if args.table:
        print_table(load_results())
        return
    names = args.configs or list(CONFIGS)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    params = params_from_dict(raw)
    meta = load_meta(SR_DATA / "meta.json")
    scale = int(meta["scale"])
    g = load_sr_generator(psnr_model(raw), scale, meta["degradation"], expected=None)
    start = time.perf_counter()
    batches = gan_phase_batches(params, g)
    hr_val, sr_val, owner = val_crops(g, scale, params.train.sr.crop_size)
    print(f"{len(batches)} GAN-phase batches and {len(hr_val)} val crops of {int(owner.max()) + 1} slices in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    base = {**{k: v for k, v in raw["train"]["sr"].items()}, **TODAY}
    common = {"psnr_model": str(psnr_model(raw)), "psnr_steps": params.train.sr.psnr_steps,
              "d_steps": len(batches), "val_crops": len(hr_val), "val_slices": int(owner.max()) + 1,
              "crop_px": params.train.sr.crop_size, "bootstrap_resamples": N_RESAMPLES}
    # Reference rows that train no D: the sharpness cue alone, and an untrained D.
    hf_rms = lambda x: gaussian_highpass(x, 1.0).flatten(1).square().mean(1).sqrt().numpy()  # noqa: E731
    real_rms, fake_rms = hf_rms(hr_val), hf_rms(sr_val)
    save_row("ref_highpass_rms", {"config": "score = RMS of x - blur_1px(x), no D; accuracy at the pooled median",
                                  **common, "machine": machine(), "fake_over_real_mean_rms":
                                  round(float(fake_rms.mean() / real_rms.mean()), 4),
                                  "val": separation(real_rms, fake_rms, owner,
                                                    float(np.median(np.r_[real_rms, fake_rms])), params.seed)})
    torch.manual_seed(params.seed)
    untrained = build_d(base)
    save_row("ref_untrained_d", {"config": "today's D, untrained", **common, "machine": machine(),
                                 "val": separation(crop_scores(untrained, hr_val), crop_scores(untrained, sr_val), owner,
                                                   0.0, params.seed)})
    for name in names:
        cfg = {**base, **CONFIGS[name]}
        start = time.perf_counter()
        d, log = train_d(cfg, batches, params.seed)
        wall = time.perf_counter() - start
        val = separation(crop_scores(d, hr_val), crop_scores(d, sr_val), owner, decision_boundary(cfg["gan_loss"]),
                         params.seed)
        last = log[-64:]
        row = {"config": {k: cfg[k] for k in (*TODAY, "betas", "r1_gamma", "label_smoothing")} | {
                   k: CONFIGS[name][k] for k in ("d_norm", "highpass_gain") if k in CONFIGS[name]},
               "overrides": CONFIGS[name], **common, "val": val, "wall_s": round(wall, 1), "machine": machine(),
               "train": {"d_adv_last64": round(float(np.mean([s["d/adv"] for s in last])), 4),
                         "real_score_last64": round(float(np.mean([s["d/real_score"] for s in last])), 4),
                         "fake_score_last64": round(float(np.mean([s["d/fake_score"] for s in last])), 4),
                         "d_adv_per_64_steps": [round(float(np.mean([s["d/adv"] for s in log[i:i + 64]])), 3)
                                                for i in range(0, len(log), 64)]}}
        save_row(name, row)
        print(f"{name}: acc {interval(val['accuracy'], 3)} auc {interval(val['auc'], 3)} d/adv {row['train']['d_adv_last64']} "
              f"({wall:.0f} s)", flush=True)
    print_table(load_results())


if __name__ == "__main__":
    main()
