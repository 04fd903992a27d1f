"""The command line most quality benchmarks share: measure and record a JSON result, or print the recorded one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def measure_or_print(doc: str, results: Path, measure: Callable[[], dict], table: Callable[[dict], str],
                     threads: int, indent: int = 1) -> int:
    """`--table`: print the table of the recorded `results` (exit 2 naming the file when there is none); else
    measure with `threads` torch threads, write `results` and print its table. `doc`: the module docstring,
    whose first line is the description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    args = parser.parse_args()
    if args.table:
        if not results.is_file():
            print(f"{results}: not found; measure first (the same command without --table)", file=sys.stderr)
            return 2
        print(table(json.loads(results.read_text())))
        return 0
    torch.set_num_threads(threads)
    result = measure()
    results.write_text(json.dumps(result, indent=indent) + "\n")
    print(table(result))
    return 0
