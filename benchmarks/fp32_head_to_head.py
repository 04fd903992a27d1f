"""fp32 training steps, head to head: the code of an earlier commit against this tree's, on this CPU.

Issue 21's target: every training step at least 2x faster on a CPU without native bf16 than the code of the
issue's date (fdb1d18, the last commit before its first change). Each side runs `benchmarks.speed.speed`
of its own tree, with that tree's params.yaml and bf16 autocast off (`make_runtime("cpu", False)`: the fp32
kernels a CPU without AVX512-BF16/AMX runs, also on one that has them), in its own process; the sides
alternate `--rounds` times so that drift of the host hits both. Rows whose GFLOP/step differ did different
work (the defaults changed between the commits, e.g. the CycleGAN's loss weights): their ratio is not a
speed-up of the same step, and the table says so.

    python -m benchmarks.fp32_head_to_head [--baseline fdb1d18] [--rounds 2] [--steps 5] [--out FILE]

Writes benchmarks/fp32_head_to_head.json (or --out: one file per CPU measured, e.g. the Intel Xeon with AMX in
benchmarks/fp32_head_to_head_xeon_amx.json) and prints the table. Time it on a quiet machine (load < 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "fp32_head_to_head.json"
# Run inside a tree (cwd): that tree's speed(), config and step functions.
ONE_SIDE = """
import json, os, sys
sys.path.insert(0, os.getcwd())
from benchmarks.speed import speed
from src.config import load_params
from src.training.runtime import make_runtime
result = speed(load_params("params.yaml"), make_runtime("cpu", False), int(sys.argv[1]))
rows = {r["step"]: [r["s_per_step"], r["gflop_per_step"]] for r in result["roofline"]}
print(json.dumps({**rows, "matmul_peak_fp32_gflop_s": result["matmul_peak_gflop_s"]["fp32"]}))
"""


def one_side(tree: Path, steps: int) -> dict[str, list[float]]:
    out = subprocess.run([sys.executable, "-c", ONE_SIDE, str(steps)], cwd=tree, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(out.stdout.strip().splitlines()[-1])


PEAK = "matmul_peak_fp32_gflop_s"


def median_peak(runs: dict[str, list[dict]]) -> float | None:
    """The median of the fp32 matmul peaks each side's process measured (None for runs recorded without)."""
    peaks = sorted(r[PEAK] for side in runs.values() for r in side if PEAK in r)
    return peaks[len(peaks) // 2] if peaks else None


def table(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per step function. `ceiling_speedup` is the most any code could gain on the same work here: the
    baseline's time over the time of this tree's FLOPs at this machine's fp32 matmul peak, which no
    convolution kernel beats."""
    peak = median_peak(runs)
    rows = []
    for step in runs["baseline"][0]:
        if step == PEAK:
            continue
        old = [r[step][0] for r in runs["baseline"]]
        new = [r[step][0] for r in runs["this_tree"] if step in r]
        if not new:
            continue
        same_work = runs["baseline"][0][step][1] == runs["this_tree"][0][step][1]
        gflop, median_new, median_old = runs["this_tree"][0][step][1], sorted(new)[len(new) // 2], sorted(old)[len(old) // 2]
        roofline = {} if peak is None else {
            "this_tree_fraction_of_fp32_peak": round(gflop / median_new / peak, 3),
            "ceiling_speedup": round(median_old / (gflop / peak), 2)}
        rows.append({"step": step, "baseline_s": old, "this_tree_s": new, **roofline,
                     "gflop_per_step": [runs["baseline"][0][step][1], runs["this_tree"][0][step][1]],
                     "same_work": same_work, "speedup_median": round(sorted(old)[len(old) // 2] /
                                                                     sorted(new)[len(new) // 2], 2)})
    return rows


def print_table(result: dict) -> None:
    print(f"baseline {result['baseline']} vs this tree {result['this_tree']}, fp32, {result['machine']}")
    print(f"{'step':32} {'baseline s':>16} {'this tree s':>16} {'GFLOP/step':>15} {'speed-up':>9} {'of peak':>10}"
          f" {'ceiling':>9}")
    print(f"fp32 matmul peak {result.get(PEAK, '?')} GFLOP/s; 'of peak': this tree's GFLOP/s over "
          "it; 'ceiling': the baseline's time over this tree's FLOPs at that peak, the most any code could gain")
    for row in result["rows"]:
        gflop = "/".join(f"{g:.1f}" for g in row["gflop_per_step"])
        note = "" if row["same_work"] else "  (different work: not a speed-up of the same step)"
        print(f"{row['step']:32} {'/'.join(map(str, row['baseline_s'])):>16} {'/'.join(map(str, row['this_tree_s'])):>16}"
              f" {gflop:>15} {row['speedup_median']:>8}x {row.get('this_tree_fraction_of_fp32_peak', '?'):>10}"
              f" {row.get('ceiling_speedup', '?'):>8}x{note}")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo: the bf16 flags name a hardware class, not a speed (the 2-core EPYC
    and Xeon of these benchmarks measured fp32 matmul peaks of 192 and 428 GFLOP/s)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def parse_timing_arguments(parser: argparse.ArgumentParser, argv: list[str] | None, results: Path,
                           print_table) -> argparse.Namespace | None:
    """The flags of the fp32 step benchmarks (this one and fp32_channels_last), added to `parser` and parsed:
    alternating rounds, steps per timing, the result file, and --table, which prints the recorded result with
    `print_table` and returns None: nothing to time."""
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=results, help="result file (default %(default)s)")
    parser.add_argument("--table", action="store_true", help="print the recorded result")
    args = parser.parse_args(argv)
    if args.table:
        if not args.out.is_file():
            parser.error(f"--table: no recorded result at {args.out}; time one first, or name it with --out")
        print_table(json.loads(args.out.read_text()))
        return None
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fp32_head_to_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="fdb1d18")
    args = parse_timing_arguments(parser, argv, RESULTS, print_table)
    if args is None:
        return 0
    from src.training.runtime import CPU_BF16_FLAGS, cpu_flags
    load = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="h2h-") as tmp:
        old_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old_tree), args.baseline], cwd=REPO, check=True)
        try:
            runs: dict[str, list[dict]] = {"baseline": [], "this_tree": []}
            for _ in range(args.rounds):
                runs["baseline"].append(one_side(old_tree, args.steps))
                runs["this_tree"].append(one_side(REPO, args.steps))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO, check=False)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    result = {"baseline": args.baseline, "this_tree": head.strip(), "steps": args.steps, "rounds": args.rounds,
              "machine": {"cpu_model": cpu_model(), "cpu_bf16_flags": sorted(CPU_BF16_FLAGS & cpu_flags()),
                          "load_avg_1min_at_start": load,
                          "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
                          "note": "bf16 autocast off on both sides: fp32 kernels"},
              "runs": runs, "rows": table(runs),
              PEAK: median_peak(runs)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
