"""Slice stacks: each volume's kept slices along each axis, square-cropped and resized, cut into splits.

`split_volumes` is the whole step: one `Stack` per (volume, axis), split positions from
src/data/splits.py (slabs, or whole volumes when >= 3), and each split gathered into arrays.
The parts are the three splits plus `train_sim` / `train_real`, the disjoint slices of the
train split whose labels feed the simulator and whose images are the real domain.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from src.config import DataConfig
from src.data.io import DataError
from src.data.preprocess import (BACKGROUND, crop_square, kept_slices, resize_images, resize_labels, set_background,
                                 slices_along, square_box)
from src.data.splits import (MIN_VOLUMES_FOR_VOLUME_SPLIT, SPLITS, SplitError, check_axes, slab_splits, subslabs,
                             volume_splits)
from src.data.volumes import Volume

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
    """Slices of `vol` along `axis` with enough foreground, one square crop, resized to image_size."""
    mask = slices_along(vol.foreground, axis)
    keep = kept_slices(mask, data.min_foreground)
    if len(keep) == 0:
        raise DataError(f"{vol.image_path}: no slice along axis {axis} has a foreground fraction >= "
                        f"data.min_foreground = {data.min_foreground}")
    mask = mask[keep]
    box = square_box(mask)
    images = resize_images(crop_square(slices_along(vol.image, axis)[keep], box, BACKGROUND), data.image_size)
    labels = None
    if vol.labels is not None:
        labels = resize_labels(crop_square(slices_along(vol.labels, axis)[keep], box, 0), data.image_size)
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


def split_volumes(volumes: list[Volume], data: DataConfig, seed: int, need_sim_real: bool,
                  what: str = "images") -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Every part in PARTS gathered over all stacks (see `gather`), and the split manifest.

    need_sim_real: the train split must also hold non-empty `train_sim` and `train_real`
    parts. Raises SplitError when a split (or one of those parts) is empty; `what` names
    the inputs in that message.
    """
    jobs = [(i, v, axis) for i, v in enumerate(volumes) for axis in data.axes]
    stacks = [make_stack(i, v, axis, data) for i, v, axis in tqdm(jobs, desc=f"slicing {what}", unit="stack",
                                                                   file=sys.stderr)]
    positions, summary = assign_splits(stacks, len(volumes), data, seed, need_sim_real)
    parts = {part: gather(stacks, positions, part) for part in PARTS}
    for split in SPLITS:
        if len(parts[split]["images"]) == 0:
            raise SplitError("fractions", f"the {split} split of the {what} is empty; add data or change the split "
                                          "fractions, the gap or the minimum foreground fraction")
    for part in ("train_sim", "train_real") if need_sim_real else ():
        if len(parts[part]["images"]) == 0:
            raise SplitError("sim_fraction", f"the {part} part of the train split is empty; add data or change the "
                                             "sim fraction or the gap")
    return parts, summary
