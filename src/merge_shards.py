"""Merge prepared shards into one data/prepared/: a cohort too large for one machine, prepared shard by shard.

A shard is an ordinary `prepare` run on a disjoint subset of the subjects: its own working directory (or
machine) whose data.folder holds only those subjects, and the same params.yaml otherwise. The shards run
under whatever the cluster already has: a Slurm job array (`sbatch --array=0-K`, each task `cd shard$ID &&
python -m src.prepare`), a PBS/LSF array, or GNU parallel on one machine. No scheduler lives here. Then

    python -m src.merge_shards --shards shard0/data/prepared shard1/data/prepared [--out data/prepared]

- refuses shards prepared with other `data` params (data.folder and data.workers aside) or another seed, naming
  the shard and the key: their slices would not be comparable;
- concatenates every array of every split CHUNK slices at a time into memory-mapped files (memory does not grow
  with the cohort), offsetting each shard's volume indices by the volumes of the shards before it;
- checks leakage across the merged splits (src/data/leakage.py, block by block with descriptor files on disk):
  a held-out slice that copies a slice of another split, in its own shard or another, stops the merge naming
  both files. A shard split by volume keeps its subjects apart; the check catches a subject in two shards;
- writes <out>/sr/, <out>/sim2real/ and <out>/manifest.json all or nothing.

Each shard fitted its simulator window and classical quantile map on a bounded sample of its own train
split (src/data/sets.py); the merged manifest keeps each shard's manifest, so what was fitted where is on record.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from src.atomic import reserved_memmap, staged_dir, staging_dir, sweep_staging, write_json
from src.data.mapped import release_pages
from src.data.io import DataError
from src.data.leakage import check_splits
from src.data.sets import CHUNK, SIM2REAL_KEYS, describe
from src.data.splits import SPLITS
from src.stage import run_stage

SR_KEYS = ("hr", "lr", "naive", "slice_index", "volume_index", "axis")
VOLUME_KEYS = {"volume_index", "real_volume_index"}  # offset per shard
PER_SHARD_DATA_KEYS = {"folder", "workers"}  # may differ between shards: where the subjects were, how many processes
DESCRIPTION = ("Merges prepared shards (each an ordinary `prepare` run on a disjoint subset of the subjects) into "
               "one prepared folder: checks their params agree, concatenates every split's arrays in chunks, and "
               "checks leakage across shards.")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found: is {path.parent} the data/prepared folder of a finished prepare run?") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not JSON ({err}); re-run prepare in that shard") from None


def check_compatible(shards: list[Path], manifests: list[dict]) -> None:
    """DataError naming the shard and key when a shard's seed or data params differ from the first shard's."""
    first = manifests[0]
    for shard, record in zip(shards[1:], manifests[1:]):
        if record.get("seed") != first.get("seed"):
            raise DataError(f"{shard}: prepared with seed {record.get('seed')}, {shards[0]} with "
                            f"{first.get('seed')}: shards must share params.yaml (seed)")
        for key in sorted(set(first["data"]) | set(record["data"])):
            if key not in PER_SHARD_DATA_KEYS and record["data"].get(key) != first["data"].get(key):
                raise DataError(f"{shard}: prepared with data.{key} = {record['data'].get(key)!r}, {shards[0]} with "
                                f"{first['data'].get(key)!r}: shards must share params.yaml (data.{key})")


def _concatenate(out: Path, sources: list[Path], key: str, offsets: list[int]) -> None:
    """<source>/<key>.npy of every shard, one after the other, into <out>/<key>.npy, CHUNK rows at a time."""
    arrays = [np.load(source / f"{key}.npy", mmap_mode="r") for source in sources]
    shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
    for source, array in zip(sources, arrays):
        if array.shape[1:] != shape[1:] or array.dtype != arrays[0].dtype:
            raise DataError(f"{source / f'{key}.npy'}: {array.dtype} {array.shape}, but {sources[0] / f'{key}.npy'} "
                            f"is {arrays[0].dtype} {arrays[0].shape}: re-run prepare in that shard")
    merged = reserved_memmap(out / f"{key}.npy", arrays[0].dtype, shape)
    start = 0
    for array, offset in zip(arrays, offsets):
        for i in range(0, len(array), CHUNK):
            rows = np.asarray(array[i:i + CHUNK])
            merged[start + i:start + i + len(rows)] = rows + offset if key in VOLUME_KEYS else rows
            release_pages(array, merged)  # RSS stays at a chunk
        start += len(array)
    merged.flush()


def _merge_set(out: Path, shards: list[Path], name: str, keys: tuple[str, ...], offsets: list[int]) -> dict:
    """One set (sr or sim2real) of every shard into `out`; returns its arrays, memory-mapped, per split."""
    merged = {}
    for split in SPLITS:
        (out / split).mkdir()
        for key in keys:
            _concatenate(out / split, [shard / name / split for shard in shards], key, offsets)
        merged[split] = {key: np.load(out / split / f"{key}.npy", mmap_mode="r") for key in keys}
    return merged


def merge(shards: list[Path], out: Path) -> dict:
    """The recipe: shards' prepared folders -> `out`. Raises DataError, and then writes nothing."""
    start = time.perf_counter()
    if len(shards) < 2:
        raise DataError("--shards: give at least two prepared folders to merge")
    if len(set(p.resolve() for p in shards)) != len(shards) or out.resolve() in {p.resolve() for p in shards}:
        raise DataError(f"--shards / --out: each folder once, and --out ({out}) not among the shards")
    manifests = [_read_json(shard / "manifest.json") for shard in shards]
    check_compatible(shards, manifests)
    sr_metas = [_read_json(shard / "sr" / "meta.json") for shard in shards]
    s2r_metas = [_read_json(shard / "sim2real" / "meta.json") for shard in shards]
    with_s2r = [meta.get("written", False) for meta in s2r_metas]
    if any(with_s2r) and not all(with_s2r):
        raise DataError(f"{shards[with_s2r.index(False)] / 'sim2real/meta.json'}: this shard has no sim-to-real sets "
                        f"({s2r_metas[with_s2r.index(False)].get('reason')}) but {shards[with_s2r.index(True)]} has")
    volumes = [len(record["volumes"]) for record in manifests]
    offsets = [int(sum(volumes[:k])) for k in range(len(shards))]
    sources = [volume["image"] for record in manifests for volume in record["volumes"]]
    for final in (out / "sr", out / "sim2real", out):
        sweep_staging(final)
    out.mkdir(parents=True, exist_ok=True)
    scratch = staging_dir(out / "merge-scratch")
    try:
        with staged_dir(out / "sr") as sr_dir, staged_dir(out / "sim2real") as s2r_dir:
            sr = _merge_set(sr_dir, shards, "sr", SR_KEYS, offsets)
            parts = {split: {"images": arrays["hr"], "labels": None, "slice_index": arrays["slice_index"],
                             "volume_index": arrays["volume_index"], "axis": arrays["axis"]}
                     for split, arrays in sr.items()}
            _, leakage = check_splits(parts, sources, "fail", scratch=scratch)  # across shards and within
            write_json(sr_dir / "meta.json", {**sr_metas[0], "counts": {s: len(sr[s]["hr"]) for s in SPLITS}})
            s2r = None
            if all(with_s2r):
                s2r = _merge_set(s2r_dir, shards, "sim2real", SIM2REAL_KEYS, offsets)
                counts = {s: {"sim": len(s2r[s]["sim"]), "real": len(s2r[s]["real"])} for s in SPLITS}
                write_json(s2r_dir / "meta.json", {**s2r_metas[0], "counts": counts,
                                                   "fitted_per_shard": "simulator window and classical map: each "
                                                                       "shard's own, on its train split"})
            else:
                write_json(s2r_dir / "meta.json", s2r_metas[0])
            record = {"stage": "merge_shards", "seed": manifests[0]["seed"], "data": manifests[0]["data"],
                      "shards": [{"folder": str(shard), "volume_offset": offset, "manifest": m}
                                 for shard, offset, m in zip(shards, offsets, manifests)],
                      "outputs": {"sr": describe(sr), "sim2real": describe(s2r) if s2r else {"written": False}},
                      "leakage": leakage, "wall_time_s": round(time.perf_counter() - start, 2)}
        write_json(out / "manifest.json", record)  # last: it records a merge whose outputs are all in place
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"shards": len(shards), "volumes": sum(volumes), "sr": {s: len(sr[s]["hr"]) for s in SPLITS}}


def main(argv: list[str] | None = None) -> int:
    return run_stage("merge_shards", DESCRIPTION, lambda params, shards, out: merge(shards, out), argv,
                     reads_params=False,
                     options={"--shards": {"type": Path, "nargs": "+", "required": True,
                                           "help": "the shards' prepared folders (each <shard>/data/prepared)"},
                              "--out": {"type": Path, "default": Path("data/prepared"),
                                        "help": "merged prepared folder (default: %(default)s)"}})


if __name__ == "__main__":
    sys.exit(main())
