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
import json
import platform
from pathlib import Path

import torch

from benchmarks.speed import speed
from src.config import load_params
from src.training.runtime import cpu_flags, make_runtime

RESULTS = Path("benchmarks/results.json")


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


def print_speed(speed_results: dict) -> None:
    if not speed_results:
        return
    peaks = speed_results["matmul_peak_gflop_s"]
    print(f"\ndevice {speed_results['device']}, bf16 autocast {speed_results['bf16']}; 2048^2 matmul peak: "
          f"fp32 {peaks['fp32']} GFLOP/s, bf16 {peaks['bf16']} GFLOP/s")
    print(f"{'step':<34} {'dtype':>5} {'GFLOP/step':>10} {'s/step':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for r in speed_results["roofline"]:
        print(f"{r['step']:<34} {r['dtype']:>5} {r['gflop_per_step']:>10.3f} {r['s_per_step']:>8.4f} "
              f"{r['gflop_s']:>8.1f} {r['fraction_of_peak']:>8.1%}")
    print(f"\n{'CycleGAN head-to-head':<34} {'ours s':>8} {'textbook s':>10} {'speed-up':>8}")
    for name, h in speed_results["head_to_head"].items():
        print(f"{name:<34} {h['ours_s_per_step']:>8.4f} {h['textbook_s_per_step']:>10.4f} {h['speedup']:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--skip-speed", action="store_true", help="only collect the quality checks")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                           "cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})}}
    previous = read_json(str(RESULTS)) or {}
    if args.skip_speed:
        if "speed" in previous:
            results["speed"] = previous["speed"]
    else:
        params = load_params()
        results["speed"] = speed(params, make_runtime(params.train.device, params.train.amp), args.steps)
    results["quality"] = quality()
    results["gpu"] = previous.get("gpu", {"note": "not measured: no GPU was lent in the sessions so far"})
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print_speed(results.get("speed", {}))
    print(f"\n{'quality check':<58} {'value':>12}  target")
    for r in results["quality"]:
        mark = {True: "ok", False: "MISS", None: "n/a"}[r["pass"]]
        print(f"{r['check'][:58]:<58} {str(r['value']):>12}  {r['target']}  [{mark}]")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
