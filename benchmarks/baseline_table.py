"""The untranslated rows of a run, from its `baselines` stage alone: the downstream Dice of sim_only, classical,
randomized and real_oracle (mean ± std over seeds [95 % interval over slices and seeds]), the paired gap
real_oracle - sim_only and each row against sim_only and classical, and the paired fidelity of the raw and
classical renderings to the real test slices of the same anatomy.

It answers "is there a gap for a translator to close?" in minutes, before any CycleGAN is trained, with the
evaluation's own code (src/evaluation/downstream.py, src/evaluation/sim2real.py) on the files the stages wrote.
The README's T1-setting table comes from it (`-S data.sim.tr_ms=500 -S data.sim.te_ms=15`).

    python -m benchmarks.baseline_table [--root RUN_FOLDER] [--out benchmarks/baseline_table_t1.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import yaml

from src.data.prepared import load_meta, load_split
from src.evaluation.dice import dice_statistics
from src.evaluation.downstream import seed_average
from src.evaluation.intervals import Resamples, mean_statistic
from src.evaluation.parts import load_counts
from src.evaluation.sim2real import paired_fidelity
from src.evaluation.sr import DATA_RANGE
from src.metrics.bootstrap import resample_indices
from src.training.runtime import cpu_flags

ROWS = ("sim_only", "classical", "randomized", "real_oracle")


def estimate(stat, std=None) -> dict:
    low, high = stat.interval()
    out = {"value": round(stat.value, 4), "ci95": [round(low, 4), round(high, 4)]}
    return out | ({"std": round(std, 4)} if std is not None else {})


def table(root: Path) -> dict:
    # The run's own params.yaml, read raw: the run may be of another commit whose params this code's typed config
    # would not accept (only seed, the bootstrap settings and the simulator settings are read).
    raw = yaml.safe_load((root / "params.yaml").read_text())
    seed, ev = raw["seed"], raw["evaluate"]
    info = json.loads((root / "pipeline/baselines/baselines.json").read_text())
    counts = load_counts(root / "pipeline/baselines/dice_counts.npz", ROWS, "baselines")
    class_names, seeds = info["class_names"], info["seeds"]
    test_dir = root / "data/prepared/sim2real/test"
    n = info["n_test"]
    draws = Resamples.draw(n, ev["bootstrap_resamples"], ev["bootstrap_set_resamples"], seed)
    seed_draws = resample_indices(len(seeds), len(draws.slices), seed, stream=1)
    rows = {}
    for row, (num, den) in counts.items():
        per_seed = [dice_statistics(a, b, class_names, draws.slices)["mean_foreground"] for a, b in zip(num, den)]
        rows[row] = seed_average(per_seed, seed_draws)
    out = {"setting": {"tr_ms": raw["data"]["sim"]["tr_ms"], "te_ms": raw["data"]["sim"]["te_ms"],
                       "randomization_t1_ordering": ev["randomization"]["t1_ordering"]},
           "n_test": n, "seeds": seeds, "downstream_mean_foreground": {}, "paired": {}}
    for row, (stat, std) in rows.items():
        out["downstream_mean_foreground"][row] = estimate(stat, std)
    for a, b in (("real_oracle", "sim_only"), ("classical", "sim_only"), ("randomized", "sim_only"),
                 ("randomized", "classical")):
        diff = rows[a][0] - rows[b][0]
        low, high = diff.interval()
        out["paired"][f"{a} - {b}"] = {"value": round(diff.value, 4), "ci95": [round(low, 4), round(high, 4)],
                                       "clear_of_0": bool(low > 0 or high < 0)}
    test = load_split(test_dir, ("sim", "classical", "sim_labels", "real"))
    aligned = bool(load_meta(root / "data/prepared/sim2real/meta.json").get("val_test_aligned", False))
    columns = paired_fidelity({"raw_sim": test["sim"], "classical": test["classical"]}, test["real"],
                              test["sim_labels"] != 0, DATA_RANGE, aligned)
    out["fidelity"] = {name: {key: estimate(mean_statistic(values, draws.slices)) for key, values in cols.items()}
                       for name, cols in columns.items()}
    out["machine"] = {"cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
                      "load_1min": round(os.getloadavg()[0], 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the run's repository folder (default: here)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    result = table(args.root)
    print(f"setting TR {result['setting']['tr_ms']} / TE {result['setting']['te_ms']} ms, "
          f"{result['n_test']} test slices, seeds {result['seeds']}")
    for row, item in result["downstream_mean_foreground"].items():
        print(f"  {row:<14} Dice {item['value']:.3f} ± {item['std']:.3f} {item['ci95']}")
    for name, item in result["paired"].items():
        print(f"  {name:<26} {item['value']:+.3f} {item['ci95']}")
    for name, metrics in result["fidelity"].items():
        print(f"  fidelity {name:<10} " + ", ".join(f"{k} {v['value']:.3f} {v['ci95']}" for k, v in metrics.items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
