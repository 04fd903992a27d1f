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
    """Targets against the last run's numbers (pipeline/evaluate/metrics.json, schema src/evaluation/schema.py),
    each with its 95 % bootstrap interval; None where the run has not happened."""
    ev = read_json("pipeline/evaluate/metrics.json") or {}
    seg = read_json("pipeline/train_segmenter/metrics.json") or {}
    sr, s2r = ev.get("sr", {}), ev.get("sim2real", {})
    rows = []

    def row(name: str, section: dict, key: str, target: str, ok) -> None:
        if not section:
            return
        value, low, high = (section[f"{key}{suffix}"] for suffix in ("", "_ci95_low", "_ci95_high"))
        rows.append({"check": name, "value": round(value, 4), "ci95": [round(low, 4), round(high, 4)],
                     "target": target, "pass": bool(ok(value, low, high))})

    row("SR: PSNR model - naive, test PSNR (dB)", sr.get("psnr_model_vs_naive"), "psnr_db",
        ">= 3.0 (issue 11)", lambda v, lo, hi: v >= 3.0 and lo > 0)
    row("SR: GAN - PSNR model, test SWD (lower = closer to HR)", sr.get("gan_vs_psnr_model"), "swd",
        "< 0, interval clear of 0", lambda v, lo, hi: hi < 0)
    row("SR: GAN - PSNR model, test PSNR (dB)", sr.get("gan_vs_psnr_model"), "psnr_db",
        ">= -1.0 (GAN keeps fidelity)", lambda v, lo, hi: lo >= -1.0)
    rows += sr_checks(sr)
    rows += sim2real_checks(s2r)
    if seg:
        dice = seg["val_sim/dice/mean_foreground"]
        rows.append({"check": "segmenter val Dice on sim (mean foreground)", "value": round(dice, 3), "ci95": None,
                     "target": ">= 0.7", "pass": dice >= 0.7})
    return rows


def sr_checks(sr: dict) -> list[dict]:
    """Issue 11's remaining targets: GAN realism at kept fidelity, and the calibrated uncertainty maps."""
    if not sr.get("calibration"):
        return []
    gan, psnr, naive = sr["gan_model"], sr["psnr_model"], sr["naive"]
    rows = [{"check": "SR: GAN SWD / PSNR model SWD (test)", "value": round(gan["swd"] / psnr["swd"], 4), "ci95": None,
             "target": "<= 0.8 (issue 11)", "pass": gan["swd"] <= 0.8 * psnr["swd"]},
            {"check": "SR: GAN - naive, test PSNR (dB)", "value": round(gan["psnr_db"] - naive["psnr_db"], 4),
             "ci95": None, "target": ">= 1.0 (issue 11)", "pass": gan["psnr_db"] - naive["psnr_db"] >= 1.0}]
    for model in ("psnr_model", "gan_model"):
        cal = sr["calibration"][model]
        rows.append({"check": f"SR: {model} test coverage of |error| <= k sigma", "value": round(cal["coverage_test"], 4),
                     "ci95": [round(cal["coverage_test_ci95_low"], 4), round(cal["coverage_test_ci95_high"], 4)],
                     "target": "0.90 +- 0.03 (issue 11)", "pass": abs(cal["coverage_test"] - 0.9) <= 0.03})
        if "error_detection_auroc" in cal:  # issue 20's replacement for the per-pixel Spearman target
            rows.append({"check": f"SR: {model} error-detection AUROC (top 10 % |error|)",
                         "value": round(cal["error_detection_auroc"], 4),
                         "ci95": [round(cal["error_detection_auroc_ci95_low"], 4),
                                  round(cal["error_detection_auroc_ci95_high"], 4)],
                         "target": "reported; stretch >= 0.8 (issue 20)", "pass": cal["error_detection_auroc"] >= 0.8})
        rho = sr["uncertainty"][f"tta_spearman_{model}"]
        rows.append({"check": f"SR: {model} Spearman(TTA sigma, |error|)", "value": round(rho, 4), "ci95": None,
                     "target": ">= 0.7 (issue 11)", "pass": rho >= 0.7})
    return rows


def sim2real_checks(s2r: dict) -> list[dict]:
    """Issue 19's targets (cross-contrast demo) on the best translated row (the one whose downstream Dice is higher)."""
    down, realism, content = (s2r.get(k, {}) for k in ("downstream", "realism", "content"))
    translated = [r for r in ("translated_sim", "translated_classical") if r in down]
    if not translated or "fidelity" not in s2r:
        return []
    best = max(translated, key=lambda r: down[r]["mean_foreground"])
    swd = {r: realism[r]["swd"] for r in ("raw_sim", "classical", best)}
    judge = content[f"judge_on_{best}"]["mean_foreground"]
    judge_real = content["judge_on_real"]["mean_foreground"]
    gap_row = s2r["downstream_vs_sim_only"]["real_oracle"]

    def check(name, item, key, target, ok):
        """A row from a metrics.json estimate/difference `item[key]` (with its interval) or a plain number."""
        if isinstance(item, dict):
            value, ci95 = item[key], (item[f"{key}_ci95_low"], item[f"{key}_ci95_high"])
        else:
            value, ci95 = item, None
        return {"check": f"sim2real ({best}): {name}", "value": round(value, 4),
                "ci95": None if ci95 is None else [round(c, 4) for c in ci95], "target": target,
                "pass": bool(ok(value, *(ci95 or (None, None))))}

    fidelity_vs = {"classical": s2r["fidelity_vs_classical"][best], "raw_sim": s2r["fidelity_vs_raw_sim"][best]}
    return [
        check("real gap: real_oracle - sim_only Dice", gap_row, "mean_foreground", ">= 0.20, interval > 0 (issue 19)",
              lambda v, lo, hi: v >= 0.20 and lo > 0),
        check("downstream gap closed", down[best], "gap_closed_fraction", ">= 0.70, low end >= 0.50 (issue 19)",
              lambda v, lo, hi: v >= 0.70 and lo >= 0.50),
        check("downstream Dice - sim_only's (paired)", s2r["downstream_vs_sim_only"][best], "mean_foreground",
              "> 0, interval > 0 (issue 19)", lambda v, lo, hi: lo > 0),
        check("downstream Dice - classical's (paired)", s2r["downstream_vs_classical"][best], "mean_foreground",
              "> 0, interval > 0 (issue 19)", lambda v, lo, hi: lo > 0),
        check("downstream Dice - randomized's (paired)", s2r["downstream_vs_randomized"][best], "mean_foreground",
              "reported; stretch: interval > 0 (issue 19)", lambda v, lo, hi: lo > 0),
        *(check(f"fidelity PSNR - {ref}'s (paired, dB)", fidelity_vs[ref], "psnr_db", ">= 3.0, interval > 0 (issue 19)",
                lambda v, lo, hi: v >= 3.0 and lo > 0) for ref in ("classical", "raw_sim")),
        *(check(f"fidelity SSIM - {ref}'s (paired)", fidelity_vs[ref], "ssim", "> 0, interval > 0 (issue 19)",
                lambda v, lo, hi: lo > 0) for ref in ("classical", "raw_sim")),
        check("judge Dice on translated - judge Dice on real", judge - judge_real, None, ">= -0.05 (issue 19)",
              lambda v, lo, hi: v >= -0.05),
        check("SWD to real / raw sim's", swd[best] / swd["raw_sim"], None, "<= 0.5 (issue 19)", lambda v, lo, hi: v <= 0.5),
        check("SWD to real / classical's", swd[best] / swd["classical"], None, "<= 0.8 (issue 19)",
              lambda v, lo, hi: v <= 0.8),
    ]


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
            # Kept from an earlier run, possibly on another machine: say which, so no one reads them as this one's.
            results["speed"] = {**previous["speed"],
                                "measured_on": previous["speed"].get("measured_on", previous.get("machine"))}
    else:
        params = load_params()
        results["speed"] = speed(params, make_runtime(params.train.device, params.train.amp), args.steps)
    results["quality"] = quality()
    results["gpu"] = previous.get("gpu", {"note": "not measured: no GPU was lent in the sessions so far"})
    for kept in ("scale",):  # written by its own benchmark (benchmarks/scale.py): not re-measured here
        if kept in previous:
            results[kept] = previous[kept]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print_speed(results.get("speed", {}))
    print(f"\n{'quality check':<58} {'value [95 % interval]':>28}  target")
    for r in results["quality"]:
        mark = {True: "ok", False: "MISS", None: "n/a"}[r["pass"]]
        value = f"{r['value']:.4g}" + (f" [{r['ci95'][0]:.4g}, {r['ci95'][1]:.4g}]" if r["ci95"] else "")
        print(f"{r['check'][:58]:<58} {value:>28}  {r['target']}  [{mark}]")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
