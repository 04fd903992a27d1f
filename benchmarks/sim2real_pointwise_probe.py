"""Pointwise probe of the cross-contrast translator: can the adversarial game reverse the tissue order at all?

The full CycleGAN mixes several things (a conv refiner, two generators, a cycle term, an lr decay).
This probe keeps only what the T2 -> T1 map needs: a generator that is the refiner's pointwise
`IntensityBranch` alone (output = ReturningClamp(x + h(x) - h(-1)), so it cannot move anatomy),
against the stage's own `PatchDiscriminator` called through `discriminate` (DiffAugment as
params.yaml). Optionally a second pointwise generator (real -> sim), its D, and the L1 cycle term,
ramped like `train.cyclegan.cycle_warmup_steps`. LSGAN, Adam (0.5, 0.999), one G and one D update a
step, no image pool, no lr decay.

Trained on the prepared **train** sim and real slices, scored on the **val** split: the translated
val sims' mean intensity per tissue (CSF / GM / WM, by the sim labels) every `--every` steps and the
foreground PSNR to the real val slice of the same anatomy (data range 2). The test split is never read.

    python -m benchmarks.sim2real_pointwise_probe            # every configuration below, then the table
    python -m benchmarks.sim2real_pointwise_probe --table

Each run uses one thread (`torch.set_num_threads(1)`), so it can be pinned beside other work.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.data.prepared import PREPARED, load_split
from src.models.cyclegan import IntensityBranch, ReturningClamp
from src.models.discriminators import PatchDiscriminator
from src.training.gan_utils import discriminate
from src.training.runtime import cpu_flags

RESULTS = Path("benchmarks/sim2real_pointwise_probe.json")
SIM2REAL = PREPARED / "sim2real"
POLICY = "translation,cutout"   # train.cyclegan.diffaugment
LOCAL = {"crop": 64, "batch": 4, "d_layers": 2, "d_downsample": 1}    # the D before this round: 34 px on 64 px crops
GLOBAL = {"crop": 128, "batch": 1, "d_layers": 3, "d_downsample": 2}  # 70 px on the 2x-pooled whole slice
CONFIGS: dict[str, dict] = {
    "local_d": {**LOCAL, "cycle": 0.0},
    "global_d": {**GLOBAL, "cycle": 0.0},
    "global_d_seed1": {**GLOBAL, "cycle": 0.0, "seed": 1},
    "global_d_cycle1": {**GLOBAL, "cycle": 1.0},
    "global_d_cycle10": {**GLOBAL, "cycle": 10.0},
    "global_d_cycle10_delay500": {**GLOBAL, "cycle": 10.0, "delay": 500, "warmup": 200},
}


def pointwise(branch: IntensityBranch):
    return lambda images: ReturningClamp.apply(images + branch(images))


def random_crops(images: torch.Tensor, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    rows = rng.integers(0, len(images), n)
    corners = rng.integers(0, images.shape[-1] - size + 1, (n, 2))
    return torch.stack([images[r, :, y:y + size, x:x + size] for r, (y, x) in zip(rows, corners)])


def lsgan_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.mse_loss(real_logits, torch.ones_like(real_logits))
                  + F.mse_loss(fake_logits, torch.zeros_like(fake_logits)))


def lsgan_g(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake_logits, torch.ones_like(fake_logits))


def run(name: str, cfg: dict, steps: int, every: int, lr: float) -> dict:
    torch.set_num_threads(1)
    seed = cfg.get("seed", 0)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = load_split(SIM2REAL / "train", ("sim", "real"))
    val = load_split(SIM2REAL / "val", ("sim", "sim_labels", "real"))
    g, f = IntensityBranch(32), IntensityBranch(32)
    d_real, d_sim = (PatchDiscriminator(1, 32, cfg["d_layers"], spectral_norm=True, downsample=cfg["d_downsample"])
                     for _ in range(2))
    cycle = cfg["cycle"]
    g_params = list(g.parameters()) + (list(f.parameters()) if cycle > 0 else [])
    opt_g = torch.optim.Adam(g_params, lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_real.parameters(), *d_sim.parameters()], 2e-4, betas=(0.5, 0.999))
    to_real, to_sim = pointwise(g), pointwise(f)
    foreground = val["sim_labels"] > 0
    trace, start = [], time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                out = to_real(val["sim"])[:, 0]
            mse = ((out - val["real"][:, 0]) ** 2)[foreground].mean().item()
            trace.append({"step": step, "csf_gm_wm": [round(out[val["sim_labels"] == k].mean().item(), 3)
                                                      for k in (1, 2, 3)],
                          "fg_psnr_db": round(float(10 * np.log10(4.0 / mse)), 2)})
            print(name, trace[-1], flush=True)
        if step == steps:
            break
        sim = random_crops(train["sim"], cfg["batch"], cfg["crop"], rng)
        real = random_crops(train["real"], cfg["batch"], cfg["crop"], rng)
        for p in (*d_real.parameters(), *d_sim.parameters()):
            p.requires_grad_(False)
        fake_real = to_real(sim)
        loss_g = lsgan_g(discriminate(d_real, fake_real, POLICY))
        if cycle > 0:
            ramp = min(1.0, max(0, step - cfg.get("delay", 0)) / cfg.get("warmup", 400))
            fake_sim = to_sim(real)
            loss_g = (loss_g + lsgan_g(discriminate(d_sim, fake_sim, POLICY))
                      + cycle * ramp * ((to_sim(fake_real) - sim).abs().mean() + (to_real(fake_sim) - real).abs().mean()))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in (*d_real.parameters(), *d_sim.parameters()):
            p.requires_grad_(True)
        loss_d = lsgan_d(discriminate(d_real, real, POLICY), discriminate(d_real, fake_real.detach(), POLICY))
        if cycle > 0:
            loss_d = loss_d + lsgan_d(discriminate(d_sim, sim, POLICY), discriminate(d_sim, fake_sim.detach(), POLICY))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    return {"config": cfg, "steps": steps, "lr_branch": lr, "wall_s": round(time.perf_counter() - start, 1),
            "load_avg_1min": round(os.getloadavg()[0], 2), "trace": trace}


def print_table(results: dict) -> None:
    print(f"{'probe (val)':28s} {'cycle':>5s} | CSF / GM / WM at the end | fg PSNR end (max) | first step CSF < GM")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        end = r["trace"][-1]
        flipped = next((t["step"] for t in r["trace"] if t["csf_gm_wm"][0] < t["csf_gm_wm"][1]), None)
        best = max(t["fg_psnr_db"] for t in r["trace"])
        means = " / ".join(f"{m:+.2f}" for m in end["csf_gm_wm"])
        print(f"{name:28s} {r['config']['cycle']:5.1f} | {means:24s} | {end['fg_psnr_db']:6.2f} ({best:5.2f})   "
              f"| {flipped if flipped is not None else 'never'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help=f"configurations (default: all): {', '.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="the branch's Adam lr (train.cyclegan.intensity_lr)")
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.table:
        for name in args.runs or list(CONFIGS):
            results[name] = run(name, CONFIGS[name], args.steps, args.every, args.lr)
            results["_machine"] = {"threads": 1, "cpu_flags_bf16": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})}
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
