"""GPU speed of the training steps: benchmarks/speed.py's roofline and head-to-head, run on CUDA.

Run where a GPU is (the CPU machines here have none); it prints the table and writes the figures, with the GPU's
name and the torch version, to OUT (default benchmarks/gpu_speed.json). Merge them into benchmarks/results.json
under "gpu" with `python benchmarks/gpu_speed.py --merge FILE` on any machine.

    python benchmarks/gpu_speed.py [--steps 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "gpu_speed.json")
    parser.add_argument("--merge", type=Path, help="put this file's figures into benchmarks/results.json, measure nothing")
    args = parser.parse_args()
    results_path = REPO / "benchmarks" / "results.json"
    if args.merge:
        results = json.loads(results_path.read_text())
        results["gpu"] = json.loads(args.merge.read_text())
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    import torch

    from benchmarks.run import print_speed
    from benchmarks.speed import speed
    from src.config import load_params
    from src.training.runtime import make_runtime

    if not torch.cuda.is_available():
        print("error: gpu_speed: no CUDA device here", file=sys.stderr)
        return 1
    params = load_params(REPO / "params.yaml")
    figures = speed(params, make_runtime("cuda", params.train.amp), args.steps)
    record = {"machine": {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                          "cuda": torch.version.cuda, "note": "torch as installed on the GPU machine, not the pinned "
                                                              "2.14.1 (that machine cannot install packages)"},
              "speed": figures}
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print_speed(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
