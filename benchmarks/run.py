"""Speed and quality benchmarks: prints a table and writes benchmarks/results.json.

Speed: median wall time of one training step of each model family at the default
params.yaml sizes (after warm-up), and of whole-slice inference, on whatever device
`train.device` selects here. Quality: the targets each stage must meet, checked against
the last `dvc repro` (pipeline/evaluate/metrics.json and the training summaries).
Targets live here, not in timed tests: a slow CI machine must not fail the test suite.

    python -m benchmarks.run [--steps 5] [--skip-speed]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from src.config import load_params
from src.data.degrade import naive_upsample
from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.models.segmenter import build_unet
from src.models.srresnet import SRResNet
from src.training.cyclegan_step import CycleGANNets, CycleGANWeights, cyclegan_step
from src.training.gan_utils import ImagePool
from src.training.runtime import make_runtime
from src.training.sr_steps import SRGanSettings, gan_step, psnr_step

RESULTS = Path("benchmarks/results.json")


def timed(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(steps: int) -> dict[str, float]:
    params = load_params()
    runtime = make_runtime(params.train.device, params.train.amp)
    sr, cg, seg = params.train.sr, params.train.cyclegan, params.segmenter
    scale, size = params.data.scale, params.data.image_size
    out: dict[str, float] = {}

    g = runtime.prepare(SRResNet(scale, params.data.degradation, sr.g_channels, sr.g_blocks))
    g_ema = copy.deepcopy(g).requires_grad_(False)
    d = runtime.prepare(PatchDiscriminator(1, sr.d_channels, sr.d_layers, spectral_norm=sr.spectral_norm))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-4), torch.optim.Adam(d.parameters(), 1e-4)
    perceptual = runtime.prepare(VGGPerceptualLoss(build_vgg19_features(None)[0], sr.vgg_layers))
    lr_img = runtime.batch(torch.rand(sr.batch_size, 1, sr.crop_size // scale, sr.crop_size // scale) * 2 - 1)
    naive_img = naive_upsample(lr_img, scale, params.data.degradation)
    hr_img = runtime.batch(torch.rand(sr.batch_size, 1, sr.crop_size, sr.crop_size) * 2 - 1)
    settings = SRGanSettings(sr.gan_loss, sr.diffaugment, sr.lambda_pixel, sr.lambda_percep, sr.lambda_adv,
                             sr.r1_gamma, sr.label_smoothing)
    out["sr_psnr_step_s"] = timed(lambda: psnr_step(g, g_ema, opt_g, lr_img, naive_img, hr_img, 0.99, runtime), steps)
    out["sr_gan_step_s"] = timed(lambda: gan_step(g, d, g_ema, opt_g, opt_d, perceptual, lr_img, naive_img, hr_img,
                                                  settings, 0.0, 0.99, runtime), steps)
    whole_lr = runtime.batch(torch.rand(1, 1, size // scale, size // scale) * 2 - 1)
    with torch.no_grad():
        out["sr_inference_per_slice_s"] = timed(lambda: g(whole_lr), steps)

    nets = CycleGANNets(*(runtime.prepare(ResnetGenerator(1, cg.g_channels, cg.g_blocks, cg.residual)) for _ in range(2)),
                        *(runtime.prepare(PatchDiscriminator(1, cg.d_channels, cg.d_layers, spectral_norm=cg.spectral_norm))
                          for _ in range(2)))
    opt_g = torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], 1e-4)
    opt_d = torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], 1e-4)
    segmenter, _ = build_unet(seg.encoder, seg.encoder_depth, seg.decoder_channels, 4, None)
    segmenter = runtime.prepare(segmenter.eval().requires_grad_(False))
    percep_cg = runtime.prepare(VGGPerceptualLoss(build_vgg19_features(None)[0], cg.vgg_layers))
    sim = runtime.batch(torch.rand(cg.batch_size, 1, cg.crop_size, cg.crop_size) * 2 - 1)
    real = runtime.batch(torch.rand(cg.batch_size, 1, cg.crop_size, cg.crop_size) * 2 - 1)
    labels = torch.randint(0, 4, (cg.batch_size, cg.crop_size, cg.crop_size), device=runtime.device)
    t = params.train
    weights = CycleGANWeights(t.lambda_adv, t.lambda_cycle, t.lambda_identity, t.lambda_percep, t.lambda_semantic)
    pools = ImagePool(cg.pool_size), ImagePool(cg.pool_size)
    out["cyclegan_step_s"] = timed(lambda: cyclegan_step(nets, opt_g, opt_d, *pools, percep_cg, segmenter, sim, labels,
                                                         real, weights, cg.gan_loss, cg.diffaugment, runtime), steps)

    unet, _ = build_unet(seg.encoder, seg.encoder_depth, seg.decoder_channels, 4, None)
    unet = runtime.prepare(unet)
    opt = torch.optim.AdamW(unet.parameters(), 1e-3)
    x = runtime.batch(torch.rand(seg.batch_size, 1, seg.crop_size, seg.crop_size) * 2 - 1)
    y = torch.randint(0, 4, (seg.batch_size, seg.crop_size, seg.crop_size), device=runtime.device)

    def seg_step():
        with runtime.autocast():
            loss = torch.nn.functional.cross_entropy(unet(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    out["segmenter_step_s"] = timed(seg_step, steps)
    out["device"] = str(runtime.device)
    return out


def read_json(path: str) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def quality() -> list[dict]:
    """Targets against the last run's numbers; None where the run has not happened."""
    ev = read_json("pipeline/evaluate/metrics.json") or {}
    sr_val = read_json("pipeline/train_sr/live/metrics.json") or {}
    seg = read_json("pipeline/train_segmenter/metrics.json") or {}
    sr, s2r = ev.get("sr", {}), ev.get("sim2real", {})
    rows = []

    def row(name, value, target, ok):
        rows.append({"check": name, "value": value, "target": target, "pass": ok if value is not None else None})

    naive, psnr_m, gan_m = (sr.get(k, {}) for k in ("naive", "psnr_model", "gan_model"))
    if naive and psnr_m:
        gain = psnr_m["psnr_db"] - naive["psnr_db"]
        row("SR test PSNR gain of PSNR model over naive (dB)", round(gain, 2), ">= 1.0", gain >= 1.0)
    if "val/psnr_db/naive" in sr_val:  # dvclive keeps summary keys flat
        gain = sr_val["val/psnr_db/psnr_model"] - sr_val["val/psnr_db/naive"]
        row("SR val PSNR gain of PSNR model over naive (dB)", round(gain, 2), ">= 1.0", gain >= 1.0)
    if psnr_m and gan_m:
        row("SR GAN SWD below PSNR model's (closer to HR texture)", round(gan_m["swd"], 2),
            f"< {psnr_m['swd']:.2f}", gan_m["swd"] < psnr_m["swd"])
    realism = s2r.get("realism", {})
    if realism:
        raw, translated = realism["raw_sim"]["swd"], realism["translated_sim"]["swd"]
        row("sim2real SWD to real: translated below raw sim", round(translated, 2), f"< {raw:.2f}", translated < raw)
    content = s2r.get("content", {})
    if content:
        raw = content["judge_on_raw_sim"]["mean_foreground"]
        translated = content["judge_on_translated_sim"]["mean_foreground"]
        row("judge Dice on translated sim (content kept)", round(translated, 3), f">= raw sim's {raw:.3f} - 0.05",
            translated >= raw - 0.05)
    down = s2r.get("downstream", {})
    if down:
        frac = down["gap_closed_fraction"]
        row("downstream: fraction of sim->real gap closed", round(frac, 3), "> 0", frac > 0)
    if seg:
        row("segmenter val Dice on sim (mean foreground)", round(seg["val_sim/dice/mean_foreground"], 3), ">= 0.7",
            seg["val_sim/dice/mean_foreground"] >= 0.7)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--skip-speed", action="store_true", help="only collect the quality checks")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}}
    previous = read_json(str(RESULTS)) or {}
    if args.skip_speed:
        if "speed" in previous:
            results["speed"] = previous["speed"]
    else:
        results["speed"] = speed(args.steps)
    results["quality"] = quality()
    results["gpu"] = previous.get("gpu", {"note": "not measured: no GPU was lent in the sessions so far"})
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{'measurement':<58} {'value':>12}  target")
    for key, value in results.get("speed", {}).items():
        print(f"{key:<58} {value if isinstance(value, str) else f'{value:.3f} s':>12}")
    for r in results["quality"]:
        mark = {True: "ok", False: "MISS", None: "n/a"}[r["pass"]]
        print(f"{r['check'][:58]:<58} {str(r['value']):>12}  {r['target']}  [{mark}]")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
