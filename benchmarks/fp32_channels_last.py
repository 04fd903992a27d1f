"""fp32 training steps in NCHW against channels_last (NHWC), on this CPU: is the layout a lever for the fp32 path?

The training stages place nets and batches channels_last on CUDA only (`src/training/runtime.py`): on the EPYC the
layout gave nothing measurable for the GAN steps. This runs `benchmarks.speed`'s roofline rows (the same step
functions, shapes and defaults as `make benchmark`) with bf16 autocast off, once per layout, alternating
`--rounds` times so that drift of the host hits both, and records s/step per layout.

    python -m benchmarks.fp32_channels_last [--rounds 2] [--steps 5] [--out FILE]

Writes benchmarks/fp32_channels_last.json (or --out) and prints the table. Time it on a quiet machine (load < 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

import benchmarks.speed as speed_module
from benchmarks.fp32_head_to_head import cpu_model, parse_timing_arguments
from src.config import load_params
from src.training.runtime import CPU_BF16_FLAGS, Runtime, cpu_flags

RESULTS = Path("benchmarks/fp32_channels_last.json")
LAYOUTS = {"nchw": False, "channels_last": True}


def step_times(channels_last: bool, steps: int) -> dict[str, float]:
    """s/step of every roofline row of benchmarks.speed in fp32, in this layout."""
    params = load_params("params.yaml")
    runtime = Runtime(torch.device("cpu"), amp=False, channels_last=channels_last)
    head_to_head = speed_module.head_to_head
    speed_module.head_to_head = lambda *args, **kwargs: None   # only the roofline rows: the CycleGAN head-to-head is another question
    try:
        result = speed_module.speed(params, runtime, steps)
    finally:
        speed_module.head_to_head = head_to_head
    return {row["step"]: row["s_per_step"] for row in result["roofline"]}


def table(runs: dict[str, list[dict[str, float]]]) -> list[dict]:
    rows = []
    for step in runs["nchw"][0]:
        nchw = [r[step] for r in runs["nchw"]]
        last = [r[step] for r in runs["channels_last"]]
        rows.append({"step": step, "nchw_s": nchw, "channels_last_s": last,
                     "speedup_median": round(statistics.median(nchw) / statistics.median(last), 2)})
    return rows


def print_table(result: dict) -> None:
    print(f"fp32 steps, NCHW vs channels_last: {result['machine']}")
    print(f"{'step':32} {'NCHW s':>16} {'channels_last s':>18} {'speed-up':>9}")
    for row in result["rows"]:
        print(f"{row['step']:32} {'/'.join(map(str, row['nchw_s'])):>16} "
              f"{'/'.join(map(str, row['channels_last_s'])):>18} {row['speedup_median']:>8}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fp32_channels_last", description=__doc__.split("\n\n")[0])
    args = parse_timing_arguments(parser, argv, RESULTS, print_table)
    if args is None:
        return 0
    load = round(os.getloadavg()[0], 2)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LAYOUTS}
    for _ in range(args.rounds):
        for name, channels_last in LAYOUTS.items():
            runs[name].append(step_times(channels_last, args.steps))
    result = {"steps": args.steps, "rounds": args.rounds,
              "machine": {"cpu_model": cpu_model(), "cpu_bf16_flags": sorted(CPU_BF16_FLAGS & cpu_flags()),
                          "load_avg_1min_at_start": load, "threads": torch.get_num_threads(),
                          "note": "bf16 autocast off: fp32 kernels"},
              "runs": runs, "rows": table(runs)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
