"""Slice stacks: each volume's kept slices along each axis, square-cropped and resized, cut into splits.

Slices whose pixels are not square by the voxel spacing read (src/data/io.py) are first resampled
to square pixels (`make_stack`), so every slice shows the anatomy in its true aspect ratio.

`split_volumes` is the whole step: one `Stack` per (volume, axis), split positions from
src/data/splits.py (slabs, or whole volumes when >= 3), and each split gathered into arrays.
The parts are the three splits plus `train_sim` / `train_real`, the disjoint slices of the
train split whose labels feed the simulator and whose images are the real domain.

For a cohort, `slice_inputs` reads, normalises and slices the volumes in a process pool
and writes each stack to a scratch folder as it arrives; `split_stacks` then gathers the
parts into memory-mapped files there. The main process never holds a volume, and never
more than one stack's slices at a time.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.atomic import reserved_memmap
from src.data.mapped import release_pages
from src.config import DataConfig
from src.data.io import DataError
from src.data.preprocess import (BACKGROUND, crop_square, kept_slices, resample_images, resample_labels, resize_images,
                                 resize_labels, set_background, slice_geometry, slices_along, square_box,
                                 square_pixel_shape)
from src.data.splits import (MIN_VOLUMES_FOR_VOLUME_SPLIT, SPLITS, SplitError, check_axes, slab_splits, subslabs,
                             volume_splits)
from src.data.volumes import Volume, VolumeInfo, read_volume, report_reading

PARTS = SPLITS + ("train_sim", "train_real")


@dataclass
class Stack:
    """The kept slices of one volume along one axis, cropped and resized to (S, S)."""

    volume: int
    axis: int
    slice_index: np.ndarray
    images: np.ndarray
    labels: np.ndarray | None


def make_stack(index: int, vol: Volume, axis: int, data: DataConfig) -> Stack:
    """Slices of `vol` along `axis` with enough foreground, resampled to square pixels when the voxel
    spacing read makes them non-square, one square crop, resized to image_size."""
    mask = slices_along(vol.foreground, axis)
    keep = kept_slices(mask, data.min_foreground)
    if len(keep) == 0:
        raise DataError(f"{vol.image_path}: no slice along axis {axis} has a foreground fraction >= "
                        f"data.min_foreground = {data.min_foreground}")
    mask, images = mask[keep], slices_along(vol.image, axis)[keep]
    labels = slices_along(vol.labels, axis)[keep] if vol.labels is not None else None
    shape = square_pixel_shape(*slice_geometry(vol.shape, vol.read.spacing_mm, axis))
    if shape != mask.shape[1:]:
        # Non-square pixels (1 x 8 mm across a thick-slice scan's slices): the square crop and resize below
        # would squash the anatomy by their aspect ratio. Square (isotropic) data never comes here.
        images, mask = resample_images(images, shape), resample_labels(mask, shape) > 0
        labels = resample_labels(labels, shape) if labels is not None else None
    box = square_box(mask)
    images = resize_images(crop_square(images, box, BACKGROUND), data.image_size)
    if labels is not None:
        labels = resize_labels(crop_square(labels, box, 0), data.image_size)
        foreground = labels > 0
    else:
        foreground = resize_labels(crop_square(mask.astype(np.uint8), box, 0), data.image_size) > 0
    images = set_background(images, foreground)
    return Stack(index, axis, keep, images, labels)


def assign_splits(stacks: list[Stack], n_volumes: int, data: DataConfig, seed: int,
                  need_sim_real: bool) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Positions (into each stack) of every part in PARTS, and the split manifest."""
    positions, entries = [], []
    if n_volumes >= MIN_VOLUMES_FOR_VOLUME_SPLIT:
        split = volume_splits(n_volumes, data.split_fractions, seed, data.sim_fraction)
        single_train = need_sim_real and not split.train_sim
        check_axes(n_volumes, data.axes, n_train_volumes=1 if single_train else None)
        summary = {"mode": "volume", "gap": data.split_gap, "volumes": {s: getattr(split, s) for s in PARTS}}
        for stack in stacks:
            members = {s: stack.volume in getattr(split, s) for s in PARTS}
            pos = {s: np.arange(len(stack.slice_index)) if members[s] else np.zeros(0, int) for s in PARTS}
            if members["train"] and single_train:
                # One train volume: its sim and real parts are alternating blocks with gaps between them.
                run = list(range(int(stack.slice_index[0]), int(stack.slice_index[-1]) + 1))
                sim, real = subslabs(run, data.sim_fraction, data.split_gap, sim_first=True, block=data.sim_block)
                pos["train_sim"] = np.flatnonzero(np.isin(stack.slice_index, sim))
                pos["train_real"] = np.flatnonzero(np.isin(stack.slice_index, real))
            positions.append(pos)
    else:
        check_axes(n_volumes, data.axes)
        summary = {"mode": "slab", "gap": data.split_gap}
        for stack in stacks:
            first, last = int(stack.slice_index[0]), int(stack.slice_index[-1])
            slabs = slab_splits(last - first + 1, data.split_fractions, data.split_gap, data.sim_fraction, seed,
                                data.sim_block)
            pos = {s: np.flatnonzero(np.isin(stack.slice_index, np.asarray(getattr(slabs, s), int) + first))
                   for s in PARTS}
            summary["order_low_to_high"] = list(slabs.order)
            positions.append(pos)
    for stack, pos in zip(stacks, positions):
        entries.append({"volume": int(stack.volume), "axis": int(stack.axis),
                        **{s: stack.slice_index[pos[s]].tolist() for s in PARTS}})
    summary["stacks"] = entries
    summary["slice_index_convention"] = ("index along `axis` of the volume as loaded by src/data/io.py "
                                         "(NIfTI: closest canonical RAS, then axes 1 and 2 flipped)")
    return positions, summary


def gather(stacks: list[Stack], positions: list[dict[str, np.ndarray]], split: str) -> dict[str, np.ndarray]:
    """Concatenate one split over all stacks: images (N, 1, S, S), labels, and where they came from."""
    parts = [(s, p[split]) for s, p in zip(stacks, positions) if len(p[split])]
    size = stacks[0].images.shape[-1]
    if not parts:
        return {"images": np.zeros((0, 1, size, size), np.float32), "labels": np.zeros((0, size, size), np.uint8),
                "slice_index": np.zeros(0, np.int64), "volume_index": np.zeros(0, np.int64),
                "axis": np.zeros(0, np.int64)}
    labels = None
    if all(s.labels is not None for s, _ in parts):
        labels = np.concatenate([s.labels[p] for s, p in parts])
    return {
        "images": np.concatenate([s.images[p] for s, p in parts])[:, None],
        "labels": labels,
        "slice_index": np.concatenate([s.slice_index[p] for s, p in parts]).astype(np.int64),
        "volume_index": np.concatenate([np.full(len(p), s.volume) for s, p in parts]).astype(np.int64),
        "axis": np.concatenate([np.full(len(p), s.axis) for s, p in parts]).astype(np.int64),
    }


def _stack_slices(job: tuple[int, Path, Path | None, DataConfig]) -> tuple[VolumeInfo, list[Stack]]:
    """Worker: one input read, normalised and sliced along every axis; the voxels stay in the worker."""
    index, image_path, label_path, data = job
    vol = read_volume(image_path, label_path, data)
    return VolumeInfo.of(vol), [make_stack(index, vol, axis, data) for axis in data.axes]


def _save_stack(stack: Stack, scratch: Path, what: str) -> Stack:
    """Write a stack's slices to `scratch` and give it back memory-mapped (read-only)."""
    base = scratch / f"{what.replace(' ', '_')}-{stack.volume}-{stack.axis}"
    np.save(f"{base}-images.npy", stack.images)
    images = np.load(f"{base}-images.npy", mmap_mode="r")
    labels = None
    if stack.labels is not None:
        np.save(f"{base}-labels.npy", stack.labels)
        labels = np.load(f"{base}-labels.npy", mmap_mode="r")
    return Stack(stack.volume, stack.axis, stack.slice_index, images, labels)


def slice_inputs(pairs: list[tuple[Path, Path | None]], data: DataConfig, workers: int, scratch: Path,
                 what: str = "images") -> tuple[list[VolumeInfo], list[Stack]]:
    """Read and slice every (image, label map or None) pair with `workers` processes (1: in this process).

    Returns each volume's VolumeInfo and every stack (volume order, then data.axes order) with
    its slices memory-mapped from `scratch`. The result does not depend on `workers`.
    """
    jobs = [(i, image, labels, data) for i, (image, labels) in enumerate(pairs)]
    infos, stacks = [], []
    progress = dict(total=len(jobs), desc=f"reading and slicing {what}", unit="vol", file=sys.stderr)
    if workers <= 1 or len(jobs) <= 1:
        results = map(_stack_slices, jobs)
        pool = None
    else:
        # forkserver, not fork: a process that has run torch has OpenMP threads, and a forked child
        # can deadlock on their locks (it did: the test suite hung in the workers). The server is
        # a fresh process, so each worker pays one import of this module (a few seconds), once.
        pool = multiprocessing.get_context("forkserver").Pool(min(workers, len(jobs)))
        results = pool.imap(_stack_slices, jobs)  # in order: indices and files stay the sequential ones
    try:
        for info, volume_stacks in tqdm(results, **progress):
            report_reading(info, data.axes)  # here, not in the worker: one log, in order
            infos.append(info)
            stacks += [_save_stack(stack, scratch, what) for stack in volume_stacks]
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return infos, stacks


def resolve_workers(workers: int) -> int:
    """data.workers: 0 means one process per CPU core."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def gather_into(stacks: list[Stack], positions: list[dict[str, np.ndarray]], split: str,
                folder: Path) -> dict[str, np.ndarray]:
    """`gather`, with images and labels written stack by stack into memory-mapped files in `folder`."""
    parts = [(s, p[split]) for s, p in zip(stacks, positions) if len(p[split])]
    if not parts:
        return gather(stacks, positions, split)
    size, n = stacks[0].images.shape[-1], sum(len(p) for _, p in parts)
    images = reserved_memmap(folder / f"{split}-images.npy", np.float32, (n, 1, size, size))  # ENOSPC, not SIGBUS
    labels = None
    if all(s.labels is not None for s, _ in parts):
        labels = reserved_memmap(folder / f"{split}-labels.npy", np.uint8, (n, size, size))
    start = 0
    for stack, pos in parts:
        images[start:start + len(pos), 0] = stack.images[pos]
        if labels is not None:
            labels[start:start + len(pos)] = stack.labels[pos]
        start += len(pos)
        release_pages(images, labels, stack.images, stack.labels)  # RSS stays at a stack (src/data/mapped.py)
    images.flush()
    return {
        "images": np.load(folder / f"{split}-images.npy", mmap_mode="r"),
        "labels": np.load(folder / f"{split}-labels.npy", mmap_mode="r") if labels is not None else None,
        "slice_index": np.concatenate([s.slice_index[p] for s, p in parts]).astype(np.int64),
        "volume_index": np.concatenate([np.full(len(p), s.volume) for s, p in parts]).astype(np.int64),
        "axis": np.concatenate([np.full(len(p), s.axis) for s, p in parts]).astype(np.int64),
    }


def split_volumes(volumes: list[Volume], data: DataConfig, seed: int, need_sim_real: bool,
                  what: str = "images") -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Every part in PARTS gathered over all stacks (see `gather`), and the split manifest.

    need_sim_real: the train split must also hold non-empty `train_sim` and `train_real`
    parts. Raises SplitError when a split (or one of those parts) is empty; `what` names
    the inputs in that message.
    """
    for vol in volumes:
        report_reading(vol, data.axes)
    jobs = [(i, v, axis) for i, v in enumerate(volumes) for axis in data.axes]
    stacks = [make_stack(i, v, axis, data) for i, v, axis in tqdm(jobs, desc=f"slicing {what}", unit="stack",
                                                                   file=sys.stderr)]
    return split_stacks(stacks, len(volumes), data, seed, need_sim_real, what)


def split_stacks(stacks: list[Stack], n_volumes: int, data: DataConfig, seed: int, need_sim_real: bool,
                 what: str = "images", scratch: Path | None = None) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """`split_volumes` from the stacks of `n_volumes` volumes; with `scratch`, the parts' images and
    labels are memory-mapped files there (`gather_into`)."""
    positions, summary = assign_splits(stacks, n_volumes, data, seed, need_sim_real)
    if scratch is None:
        parts = {part: gather(stacks, positions, part) for part in PARTS}
    else:
        folder = scratch / f"parts-{what.replace(' ', '_')}"
        folder.mkdir()
        parts = {part: gather_into(stacks, positions, part, folder) for part in PARTS}
    for split in SPLITS:
        if len(parts[split]["images"]) == 0:
            raise SplitError("fractions", f"the {split} split of the {what} is empty; add data or change the split "
                                          "fractions, the gap or the minimum foreground fraction")
    for part in ("train_sim", "train_real") if need_sim_real else ():
        if len(parts[part]["images"]) == 0:
            raise SplitError("sim_fraction", f"the {part} part of the train split is empty; add data or change the "
                                             "sim fraction or the gap")
    return parts, summary
