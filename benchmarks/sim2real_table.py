"""A run's whole sim-to-real section as two tables (README format) and a JSON file: every rendering's paired
fidelity to the real slice of the same anatomy, realism (SWD) and content (judge Dice), and all six downstream
rows with the gap closed and the paired differences that issue 19 reads.

It reads only the run's own files (pipeline/evaluate/metrics.json and params.yaml), so it documents a run of
any setting: the README's T1-setting table comes from a run with `-S data.sim.tr_ms=500 -S data.sim.te_ms=15`.

    python -m benchmarks.sim2real_table --root RUN_FOLDER [--out benchmarks/sim2real_t1.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from src.training.runtime import cpu_flags

RENDERINGS = ("raw_sim", "classical", "translated_sim", "translated_classical")
LABELS = {"raw_sim": "raw sim", "classical": "classical (blur + histogram matching)",
          "translated_sim": "CycleGAN(raw sim)", "translated_classical": "CycleGAN(classical)",
          "sim_only": "raw sim (`sim_only`)", "randomized": "randomised, any tissue order",
          "real_oracle": "real labels (oracle)"}
DOWNSTREAM = ("sim_only", "classical", "randomized", "translated_sim", "translated_classical", "real_oracle")


def estimate(section: dict, key: str) -> dict:
    out = {"value": section[key], "ci95": [section.get(f"{key}_ci95_low"), section.get(f"{key}_ci95_high")]}
    if f"{key}_std" in section:
        out["std"] = section[f"{key}_std"]
    return out


def table(root: Path) -> dict:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    metrics = json.loads((root / "pipeline/evaluate/metrics.json").read_text())
    s2r = metrics["sim2real"]
    out = {"setting": {"tr_ms": raw["data"]["sim"]["tr_ms"], "te_ms": raw["data"]["sim"]["te_ms"]},
           "renderings": {}, "downstream": {}, "paired": {}}
    for name in RENDERINGS:
        fid, real = s2r["fidelity"][name], s2r["realism"][name]
        judge = s2r["content"][f"judge_on_{name}"]
        out["renderings"][name] = {"psnr_db": estimate(fid, "psnr_db"), "ssim": estimate(fid, "ssim"),
                                   "mae": estimate(fid, "mae"), "swd": estimate(real, "swd"),
                                   "judge_dice": estimate(judge, "mean_foreground")}
    out["judge_dice_on_real"] = estimate(s2r["content"]["judge_on_real"], "mean_foreground")
    for row in DOWNSTREAM:
        d = s2r["downstream"][row]
        out["downstream"][row] = {**{c: d[c] for c in ("csf", "gm", "wm")},
                                  "mean_foreground": estimate(d, "mean_foreground"),
                                  "gap_closed_fraction": estimate(d, "gap_closed_fraction")}
    for against in ("sim_only", "classical", "randomized"):
        for row, diff in s2r[f"downstream_vs_{against}"].items():
            out["paired"][f"downstream {row} - {against}"] = estimate(diff, "mean_foreground")
    for against in ("raw_sim", "classical"):
        for row, diff in s2r[f"fidelity_vs_{against}"].items():
            out["paired"][f"psnr_db {row} - {against}"] = estimate(diff, "psnr_db")
    flags = sorted({"avx512_bf16", "amx_bf16"} & cpu_flags())
    out["machine"] = {"cpu_bf16": flags or "none", "cores": os.cpu_count()}
    return out


def fmt(e: dict, digits: int = 3) -> str:
    low, high = e["ci95"]
    std = f" ± {e['std']:.{digits}f}" if "std" in e else ""
    if low is None or high is None or e["value"] != e["value"]:
        return f"{e['value']:.{digits}f}{std}"
    return f"{e['value']:.{digits}f}{std} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown(t: dict) -> str:
    lines = ["| rendering (test) | PSNR to real (dB) ↑ | SSIM ↑ | MAE ↓ | SWD to real ↓ | judge Dice on it ↑ |",
             "|---|---|---|---|---|---|"]
    for name, r in t["renderings"].items():
        lines.append(f"| {LABELS[name]} | {fmt(r['psnr_db'], 2)} | {fmt(r['ssim'])} | {fmt(r['mae'])} | "
                     f"{fmt(r['swd'], 1)} | {fmt(r['judge_dice'])} |")
    lines.append(f"| real test slices (the bar) | | | | | {fmt(t['judge_dice_on_real'])} |")
    lines += ["", "| downstream row (trained on) | CSF | GM | WM | mean foreground ± std [95 %] ↑ | gap closed ↑ |",
              "|---|---|---|---|---|---|"]
    for row, d in t["downstream"].items():
        lines.append(f"| {LABELS.get(row, row)} | {d['csf']:.3f} | {d['gm']:.3f} | {d['wm']:.3f} | "
                     f"{fmt(d['mean_foreground'])} | {fmt(d['gap_closed_fraction'], 2)} |")
    lines += ["", "| paired difference | value [95 %] |", "|---|---|"]
    lines += [f"| {name} | {fmt(e)} |" for name, e in t["paired"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the run's folder (default: here)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    t = table(args.root)
    print(markdown(t))
    if args.out:
        args.out.write_text(json.dumps(t, indent=2) + "\n")


if __name__ == "__main__":
    main()
