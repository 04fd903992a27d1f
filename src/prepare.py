"""DVC stage `prepare`: MRI volumes -> normalised 2-D slices, super-resolution pairs and sim-to-real sets.

Reads params `seed` and `data` and (paths relative to the working directory) the volumes of
data.source: data/raw/mni152/{t1,gm,wm}.nii.gz (stage `template`) or data.folder's images/,
labels/, sim/, sim_labels/ (layout: src/data/volumes.py; splits: src/data/splits.py). Held-out slices that copy
another split's (exact, near or mirrored) stop the stage or are dropped (data.leakage;
src/data/leakage.py). Sweeps what a killed run left, then writes all or nothing, leaving DVC's
data/prepared/.gitignore alone (array layouts: src/data/sets.py). The volumes of data.folder are
read and sliced by data.workers processes, and the slices go through memory-mapped scratch files
(data/.prepare-scratch-tmp-*, removed at the end), so the cohort's volumes are never all in RAM:

    data/prepared/sr/{train,val,test}/<key>.npy, meta.json        HR / LR / naive upsampling pairs
    data/prepared/sim2real/{train,val,test}/<key>.npy, meta.json  sim and real slices with labels
                                                            (without labels only meta.json, saying why)
    data/prepared/manifest.json    inputs with sha256, volumes (spacing and orientation read, resampling),
                                   splits, outputs, resolved params
    pipeline/prepare/preview.png   a few test slices of every set
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from src.atomic import staged_dir, staging_dir, sweep_staging, write_json
from src.config import ConfigError, DataConfig, Params
from src.data.io import DataError
from src.data.leakage import check_splits
from src.data.manifest import manifest
from src.data.preview import write_preview
from src.data.sets import not_written_meta, save_sets, sim2real_meta, sim2real_sets_into, sr_meta, sr_sets_into
from src.data.splits import SplitError
from src.data.stacks import resolve_workers, slice_inputs, split_stacks, split_volumes
from src.data.volumes import VolumeInfo, folder_layout, read_mni152
from src.stage import run_stage

MNI_DIR, OUT_DIR, PREVIEW_DIR = Path("data/raw/mni152"), Path("data/prepared"), Path("pipeline/prepare")
SCRATCH = Path("data/prepare-scratch")  # staged as data/.prepare-scratch-tmp-<pid>-*: swept like the outputs
NOISE_STREAM = 2  # np.random.default_rng([seed, stream]); stream 0 is the split, SIM_STREAM (1) the simulator
SPLIT_KEYS = {"gap": "data.split_gap", "block": "data.sim_block", "axes": "data.axes",  # SplitError.setting
              "fractions": "data.split_fractions", "sim_fraction": "data.sim_fraction"}
NO_LABELS = "no label maps (data.folder has no labels/): sim-to-real sets need tissue labels"
DESCRIPTION = ("Reads params `seed`, `data` and the volumes of data.source (data/raw/mni152/ or data.folder: "
               "images/, labels/, sim/, sim_labels/); writes data/prepared/sr/ and data/prepared/sim2real/ "
               "({train,val,test}/<key>.npy + meta.json), data/prepared/manifest.json and pipeline/prepare/preview.png. "
               "Paths are relative to the working directory.")


def prepare(params: Params) -> dict:
    """The stage's recipe; returns summary counts. Raises DataError / ConfigError, and then writes nothing."""
    start, data = time.perf_counter(), params.data
    # What a killed run left (OUT_DIR: older code staged it whole).
    for final in (OUT_DIR / "sr", OUT_DIR / "sim2real", PREVIEW_DIR, OUT_DIR, SCRATCH):
        sweep_staging(final)
    if data.source == "folder" and not Path(data.folder).is_dir():
        raise DataError(f"{Path(data.folder)}: folder not found (data.folder)")
    scratch = staging_dir(SCRATCH)
    try:
        return _prepare(params, scratch, start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def slice_and_split(data: DataConfig, seed: int, scratch: Path) -> tuple:
    """Read, slice and split the volumes of data.source: (volume infos, input files, parts, split manifest,
    the user's sim parts and their split manifest or None, True when the user gave sim images).
    Folder volumes are sliced by data.workers processes into memory-mapped files in `scratch`."""
    if data.source == "mni152":
        volumes, inputs = read_mni152(MNI_DIR, data)
        has_labels = all(v.labels is not None for v in volumes)
        parts, splits = split_volumes(volumes, data, seed, need_sim_real=has_labels)
        return [VolumeInfo.of(v) for v in volumes], inputs, parts, splits, None, None, False
    pairs, sim_pairs = folder_layout(Path(data.folder))
    workers = resolve_workers(data.workers)
    volumes, stacks = slice_inputs(pairs, data, workers, scratch)
    inputs = [p for pair in pairs for p in pair if p is not None]
    has_labels = all(v.label_source is not None for v in volumes)
    sim_parts = sim_splits = None
    if sim_pairs is not None:
        sim_volumes, sim_stacks = slice_inputs(sim_pairs, data, workers, scratch, what="sim images")
        inputs += [p for pair in sim_pairs for p in pair]
    parts, splits = split_stacks(stacks, len(volumes), data, seed, has_labels and sim_pairs is None, scratch=scratch)
    if sim_pairs is not None:
        sim_parts, sim_splits = split_stacks(sim_stacks, len(sim_volumes), data, seed, False, "sim images", scratch)
    return volumes, inputs, parts, splits, sim_parts, sim_splits, sim_pairs is not None


def _prepare(params: Params, scratch: Path, start: float) -> dict:
    data, seed = params.data, params.seed
    try:
        volumes, inputs, parts, splits, sim_parts, sim_splits, user_sim = slice_and_split(data, seed, scratch)
    except SplitError as err:
        raise ConfigError(f"{SPLIT_KEYS[err.setting]}: {err}") from None
    has_labels = all(v.label_source is not None for v in volumes)
    # Copies across splits that slabs and volume splits cannot see (an input exported twice, a symmetric volume).
    parts, leakage = check_splits(parts, [str(v.image_path) for v in volumes], data.leakage, scratch=scratch)
    drop_from_manifest(splits, leakage["dropped"])
    splits["notes"] = [v.note for v in volumes if v.note]
    # Only prepare's own outputs are staged and swapped in: DVC's data/prepared/.gitignore stays. Every array is
    # streamed into its file; the split-level fits read bounded samples (src/data/sets.py).
    with staged_dir(OUT_DIR / "sr") as sr_dir, staged_dir(OUT_DIR / "sim2real") as s2r_dir, \
            staged_dir(PREVIEW_DIR) as preview_dir:
        sr = sr_sets_into(sr_dir, parts, data, np.random.default_rng([seed, NOISE_STREAM]))
        sr_info = sr_meta(sr, data)
        save_sets(sr_dir, None, sr_info)
        s2r = (sim2real_sets_into(s2r_dir, parts, sim_parts, data, seed, resolve_workers(data.workers))
               if has_labels else None)
        s2r_info = sim2real_meta(s2r, data, user_sim) if s2r else not_written_meta(NO_LABELS)
        save_sets(s2r_dir, None, s2r_info)
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
