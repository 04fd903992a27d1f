"""The evaluation stages' hand-over files: what `baselines`, `evaluate_sr` and `evaluate_sim2real` write for the
`evaluate` stage to assemble into metrics.json, read back with errors that name the file and the stage to re-run.

`evaluate` is split along its dependencies (issue: fast experiments) so that DVC re-runs only what a changed
param touches: `dvc exp run -S train.lambda_cycle=10` re-runs `evaluate_sim2real` (the translated rows) and the
cheap assembly, not the SR scoring or the twelve baseline U-Nets. Every part records the split digest of the
test data it scored, so parts computed on different prepared data cannot be assembled into one file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from src.atomic import write_text

# {row: (numerators, denominators)}, each (n_seeds, n, C): src/evaluation/downstream.py's Counts (not imported,
# so that the assembly stage reaches no training code)
Counts = dict[str, tuple[np.ndarray, np.ndarray]]
PART_FILE = "part.json"
PER_SLICE_FILE = "per_slice.json"
COUNTS_FILE = "dice_counts.npz"


def write_part(folder: Path, part: dict[str, Any], per_slice: list[dict]) -> None:
    """part.json (the sections and what they were computed on) and per_slice.json (the rows of per_slice.csv)."""
    write_text(folder / PART_FILE, json.dumps(part, indent=1, allow_nan=True) + "\n")
    write_text(folder / PER_SLICE_FILE, json.dumps(per_slice, allow_nan=True) + "\n")


def read_part(folder: Path, stage: str, keys: tuple[str, ...]) -> tuple[dict[str, Any], list[dict]]:
    """(part, per-slice rows) written by `stage` into `folder`; a missing, unreadable or incomplete file names
    itself and the stage that writes it."""
    out = []
    for name in (PART_FILE, PER_SLICE_FILE):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (written by stage {stage}: `dvc repro {stage}`)")
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); re-run `dvc repro {stage}`") from None
    part, rows = out
    missing = [k for k in keys if k not in part] if isinstance(part, dict) else list(keys)
    if missing or not isinstance(rows, list):
        raise ValueError(f"{folder / PART_FILE}: lacks {missing or 'its per-slice rows'}; re-run `dvc repro {stage}`")
    return part, rows


def save_counts(path: Path, counts: Counts) -> None:
    """{row: (numerators, denominators)} as one .npz (`<row>/num`, `<row>/den`), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"{row}/{part}": array for row, pair in counts.items()
                           for part, array in zip(("num", "den"), pair)})
        tmp.replace(path)
    finally:  # a full disk half-way leaves no temporary file
        tmp.unlink(missing_ok=True)


def load_counts(path: Path, rows: tuple[str, ...], stage: str) -> Counts:
    """The counts of `rows` saved by `save_counts`; a missing file or row names the file and the stage."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (written by stage {stage}: `dvc repro {stage}`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {row: (data[f"{row}/num"], data[f"{row}/den"]) for row in rows}
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path}: unreadable or incomplete Dice counts ({err}); re-run `dvc repro {stage}`") from None


def check_same(values: dict[str, Any], what: str) -> Any:
    """The one value every part agrees on ({part file: value}); parts that disagree are named."""
    distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
    if len(distinct) > 1:
        listing = ", ".join(f"{where}: {value}" for where, value in values.items())
        raise ValueError(f"the evaluation parts disagree on {what} ({listing}); re-run the stale stage "
                         f"(`dvc repro evaluate`)")
    return next(iter(values.values()))
