"""DVC stage `prepare`: MRI volumes -> normalised 2-D slices, super-resolution pairs and sim-to-real sets.

Reads params `seed` and `data` and (paths relative to the working directory) the volumes of
data.source: data/raw/mni152/{t1,gm,wm}.nii.gz (stage `template`) or data.folder's images/,
labels/, sim/, sim_labels/ (layout: src/data/volumes.py; splits: src/data/splits.py). Held-out slices that copy
another split's (exact, near or mirrored) stop the stage or are dropped (data.leakage;
src/data/leakage.py). Sweeps what a killed run left, then writes all or nothing, leaving DVC's
data/prepared/.gitignore alone (array layouts: src/data/sets.py):

    data/prepared/sr/{train,val,test}.npz, meta.json        HR / LR / naive upsampling pairs
    data/prepared/sim2real/{train,val,test}.npz, meta.json  sim and real slices with labels
                                                            (without labels only meta.json, saying why)
    data/prepared/manifest.json    inputs with sha256, volumes, splits, outputs, resolved params
    pipeline/prepare/preview.png   a few test slices of every set
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from src.atomic import staged_dir, sweep_staging, write_json
from src.config import ConfigError, Params
from src.data.io import DataError
from src.data.leakage import check_splits
from src.data.manifest import manifest
from src.data.preview import write_preview
from src.data.sets import not_written_meta, save_sets, sim2real_meta, sim2real_sets, sr_meta, sr_sets
from src.data.splits import SplitError
from src.data.stacks import split_volumes
from src.data.volumes import read_folder, read_mni152
from src.stage import run_stage

MNI_DIR, OUT_DIR, PREVIEW_DIR = Path("data/raw/mni152"), Path("data/prepared"), Path("pipeline/prepare")
SIM_STREAM, NOISE_STREAM = 1, 2  # np.random.default_rng([seed, stream]); stream 0 is the split
SPLIT_KEYS = {"gap": "data.split_gap", "block": "data.sim_block", "axes": "data.axes",  # SplitError.setting
              "fractions": "data.split_fractions", "sim_fraction": "data.sim_fraction"}
NO_LABELS = "no label maps (data.folder has no labels/): sim-to-real sets need tissue labels"
DESCRIPTION = ("Reads params `seed`, `data` and the volumes of data.source (data/raw/mni152/ or data.folder: "
               "images/, labels/, sim/, sim_labels/); writes data/prepared/sr/ and data/prepared/sim2real/ "
               "({train,val,test}.npz + meta.json), data/prepared/manifest.json and pipeline/prepare/preview.png. "
               "Paths are relative to the working directory.")


def prepare(params: Params) -> dict:
    """The stage's recipe; returns summary counts. Raises DataError / ConfigError, and then writes nothing."""
    start, data, seed = time.perf_counter(), params.data, params.seed
    for final in (OUT_DIR / "sr", OUT_DIR / "sim2real", PREVIEW_DIR, OUT_DIR):  # OUT_DIR: older code staged it whole
        sweep_staging(final)  # what a killed run left
    if data.source == "mni152":
        (volumes, inputs), user_sim = read_mni152(MNI_DIR, data), None
    elif Path(data.folder).is_dir():
        volumes, user_sim, inputs = read_folder(Path(data.folder), data)
    else:
        raise DataError(f"{Path(data.folder)}: folder not found (data.folder)")
    has_labels = all(v.labels is not None for v in volumes)
    sim_parts = sim_splits = None
    try:
        parts, splits = split_volumes(volumes, data, seed, need_sim_real=has_labels and user_sim is None)
        if user_sim is not None:
            sim_parts, sim_splits = split_volumes(user_sim, data, seed, need_sim_real=False, what="sim images")
    except SplitError as err:
        raise ConfigError(f"{SPLIT_KEYS[err.setting]}: {err}") from None
    # Copies across splits that slabs and volume splits cannot see (an input exported twice, a symmetric volume).
    parts, leakage = check_splits(parts, [str(v.image_path) for v in volumes], data.leakage)
    drop_from_manifest(splits, leakage["dropped"])
    splits["notes"] = [v.note for v in volumes if v.note]
    sr = sr_sets(parts, data, np.random.default_rng([seed, NOISE_STREAM]))
    s2r = sim2real_sets(parts, sim_parts, data, np.random.default_rng([seed, SIM_STREAM])) if has_labels else None
    sr_info = sr_meta(sr, data)
    s2r_info = sim2real_meta(s2r, data, user_sim is not None) if s2r else not_written_meta(NO_LABELS)

    # Only prepare's own outputs are staged and swapped in: DVC's data/prepared/.gitignore stays.
    with staged_dir(OUT_DIR / "sr") as sr_dir, staged_dir(OUT_DIR / "sim2real") as s2r_dir, \
            staged_dir(PREVIEW_DIR) as preview_dir:
        save_sets(sr_dir, sr, sr_info)
        save_sets(s2r_dir, s2r, s2r_info)
        write_preview(preview_dir / "preview.png", sr["test"], s2r["test"] if s2r else None, data)
        record = {**manifest(data, seed, inputs, volumes, splits, sim_splits, sr, s2r, NO_LABELS),
                  "leakage": leakage, "wall_time_s": round(time.perf_counter() - start, 2)}
    write_json(OUT_DIR / "manifest.json", record)  # last: it records a run whose outputs are all in place
    return {"volumes": len(volumes), "split": splits["mode"], "sr": sr_info["counts"],
            "sim2real": s2r_info["counts"] if s2r else f"NOT written: {NO_LABELS}"}


def drop_from_manifest(splits: dict, dropped: dict[str, list[dict]]) -> None:
    """Take the slices the leakage check dropped out of the split manifest's per-stack lists."""
    for split, slices in dropped.items():
        for entry in splits["stacks"]:
            gone = {s["slice"] for s in slices if (s["volume"], s["axis"]) == (entry["volume"], entry["axis"])}
            entry[split] = [i for i in entry[split] if i not in gone]


def main(argv: list[str] | None = None) -> int:
    return run_stage("prepare", DESCRIPTION, prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
