"""Train/val/test splits without leakage: contiguous slabs of slices, or whole volumes.

Neighbouring MRI slices are nearly identical, so a random split of slices would put
near-copies of test images into training. With one or two volumes the slice index is cut
into contiguous slabs with `gap` slices dropped between neighbouring slabs:

    low index  [val] gap [train: sim|gap|real|gap|sim|gap|real ...] gap [test]  high index   (or mirrored)

The seed decides the orientation (which end holds the test slab; val takes the other) and
which train sub-slab feeds the simulator. Train sits in the middle so that both held-out
slabs touch it through one gap only and neither held-out slab is the smallest anatomy at
both ends. The sim and real train slices are disjoint blocks (about `block` slices each at
sim_fraction 0.5) that alternate, with the gap between every two blocks: the CycleGAN
never sees an image and the simulation of the same anatomy (it is unpaired data), yet
both domains cover the same range of anatomy. Two contiguous sub-slabs would put e.g. inferior slices in sim
and superior ones in real, and the adversarial loss would then reward changing anatomy
(more white matter) instead of appearance: the CycleGAN assumption that both domains
share one content distribution would be broken by the split itself.
The gap slices inside the train slab still belong to the train split (super-resolution
uses the whole slab).

With three or more volumes whole volumes are split (a seeded permutation), and the train
volumes are divided into sim and real volumes (when there is only one train volume, its
slices are divided into two sub-slabs with the gap instead).

Slices along different axes of one volume intersect, so slab splits support one axis only
(`check_axes`).

A split the slices or volumes cannot hold raises `SplitError`, which names the argument to
change in this module's own terms (`gap`, `block`, ...): the stage maps it to its params key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")
MIN_VOLUMES_FOR_VOLUME_SPLIT = 3


class SplitError(ValueError):
    """The slices or volumes cannot hold the split. `setting` is the argument to change:
    "gap", "block", "axes", "fractions" or "sim_fraction"."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class SlabSplit:
    """Slice indices (0 .. n_slices - 1) per split; `order` lists the slabs from low to high index."""

    train: list[int]
    val: list[int]
    test: list[int]
    train_sim: list[int]
    train_real: list[int]
    gap: int
    order: tuple[str, ...]


@dataclass(frozen=True)
class VolumeSplit:
    """Volume indices per split. `train_sim` and `train_real` are empty when there is a
    single train volume: its slices are then split by `subslabs`."""

    train: list[int]
    val: list[int]
    test: list[int]
    train_sim: list[int]
    train_real: list[int]


def allocate(n: int, fractions: list[float], minimum: int = 1) -> list[int]:
    """Integer counts summing to `n`, proportional to `fractions` (largest remainder),
    each at least `minimum`. Raises ValueError when n is too small."""
    if n < minimum * len(fractions):
        raise ValueError(f"{n} items cannot give {len(fractions)} parts of at least {minimum}")
    raw = np.asarray(fractions, dtype=float) / float(sum(fractions)) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    while (counts < minimum).any():
        low, high = int(np.argmin(counts)), int(np.argmax(counts))
        counts[low] += 1
        counts[high] -= 1
    return counts.tolist()


def _split_rng(seed: int) -> np.random.Generator:
    # Its own stream: changing the simulator or noise draws never moves the split.
    return np.random.default_rng([seed, 0])


def subslabs(indices: list[int], sim_fraction: float, gap: int, sim_first: bool,
             block: int = 10) -> tuple[list[int], list[int]]:
    """Cut a contiguous run of slice indices into alternating sim and real blocks.

    Each sim block holds about 2 * block * sim_fraction slices and each real block the
    rest of 2 * block; `gap` slices are dropped between every two blocks. Raises
    SplitError when the run cannot hold one block of each with the gap between.
    """
    if len(indices) - gap < 2:
        raise SplitError("gap", f"a train slab of {len(indices)} slices cannot hold a sim and a real block with a "
                                f"gap of {gap}; lower the gap or the minimum foreground fraction, or add data")
    n_sim, n_real = allocate(2 * block, [sim_fraction, 1.0 - sim_fraction])
    n_sim, n_real = max(1, n_sim), max(1, n_real)
    if len(indices) < n_sim + gap + n_real:
        # Too short for full blocks: one block of each, split by the fraction.
        n_sim = max(1, allocate(len(indices) - gap, [sim_fraction, 1.0 - sim_fraction])[0])
        n_real = len(indices) - gap - n_sim
    sim, real = [], []
    pos, sim_turn = 0, sim_first
    while pos < len(indices):
        size = n_sim if sim_turn else n_real
        (sim if sim_turn else real).extend(indices[pos:pos + size])
        pos += size + gap
        sim_turn = not sim_turn
    if not sim or not real:
        raise SplitError("block", f"a train slab of {len(indices)} slices gave no {'real' if sim else 'sim'} "
                                  "block; lower the block size or the gap")
    return sim, real


def slab_splits(n_slices: int, fractions: list[float], gap: int, sim_fraction: float, seed: int,
                block: int = 10) -> SlabSplit:
    """Contiguous train/val/test slabs over slice indices 0 .. n_slices - 1 (see module docstring).

    fractions: (train, val, test), applied to the slices left after the two gaps.
    Raises SplitError (setting "gap") when the slices cannot hold the slabs.
    """
    usable = n_slices - 2 * gap
    n_train_min = 2 + gap  # room for the sim and real sub-slabs and the gap between them
    if usable < n_train_min + 2:
        raise SplitError("gap", f"{n_slices} slices are too few for train/val/test slabs with gaps of {gap} slices "
                                "(and a train slab split into sim and real); lower the gap or the minimum foreground "
                                f"fraction, or add data (>= {MIN_VOLUMES_FOR_VOLUME_SPLIT} volumes are split by "
                                "volume)")
    n_train, n_val, n_test = allocate(usable, fractions)
    if n_train < n_train_min:
        n_val, n_test = allocate(usable - n_train_min, [n_val, n_test])
        n_train = n_train_min
    rng = _split_rng(seed)
    test_high = bool(rng.integers(2))
    sim_next_to_val = bool(rng.integers(2))
    lengths = {"val": n_val, "train": n_train, "test": n_test}
    order = ("val", "train", "test") if test_high else ("test", "train", "val")
    slabs, start = {}, 0
    for name in order:
        slabs[name] = list(range(start, start + lengths[name]))
        start += lengths[name] + gap
    # sim_first means the sim sub-slab has the lower indices.
    sim_first = sim_next_to_val == (order[0] == "val")
    train_sim, train_real = subslabs(slabs["train"], sim_fraction, gap, sim_first, block)
    return SlabSplit(train=slabs["train"], val=slabs["val"], test=slabs["test"],
                     train_sim=train_sim, train_real=train_real, gap=gap, order=order)


def volume_splits(n_volumes: int, fractions: list[float], seed: int, sim_fraction: float) -> VolumeSplit:
    """Split whole volumes (n_volumes >= 3) by a seeded permutation; every split gets >= 1.

    Train volumes are divided into sim and real volumes by `sim_fraction` when there are at
    least two; otherwise both lists are empty and the caller splits the single train
    volume's slices with `subslabs`.
    """
    if n_volumes < MIN_VOLUMES_FOR_VOLUME_SPLIT:
        raise ValueError(f"volume splits need >= {MIN_VOLUMES_FOR_VOLUME_SPLIT} volumes, got {n_volumes}")
    rng = _split_rng(seed)
    perm = rng.permutation(n_volumes).tolist()
    n_train, n_val, n_test = allocate(n_volumes, fractions)
    train = sorted(perm[:n_train])
    val = sorted(perm[n_train : n_train + n_val])
    test = sorted(perm[n_train + n_val :])
    train_sim: list[int] = []
    train_real: list[int] = []
    if n_train >= 2:
        n_sim = allocate(n_train, [sim_fraction, 1.0 - sim_fraction])[0]
        shuffled = rng.permutation(train).tolist()
        train_sim, train_real = sorted(shuffled[:n_sim]), sorted(shuffled[n_sim:])
    return VolumeSplit(train=train, val=val, test=test, train_sim=train_sim, train_real=train_real)


def check_axes(n_volumes: int, axes: list[int], n_train_volumes: int | None = None) -> None:
    """SplitError (setting "axes") when slices along several axes would share voxels across splits.

    Slab splits (fewer than 3 volumes) and the sub-slab split of a single train volume
    cut one slice index; slices along another axis cross every slab.
    """
    if len(axes) <= 1:
        return
    if n_volumes < MIN_VOLUMES_FOR_VOLUME_SPLIT:
        raise SplitError("axes", f"{list(axes)} slices one volume along several axes, but slices along different axes "
                                 f"intersect and would leak between train/val/test slabs; with {n_volumes} volume(s) "
                                 f"use one axis, or provide >= {MIN_VOLUMES_FOR_VOLUME_SPLIT} volumes (split by "
                                 "volume)")
    if n_train_volumes is not None and n_train_volumes < 2:
        raise SplitError("axes", f"{list(axes)} with a single train volume: its sim and real sub-slabs would intersect "
                                 "along the other axes; use one axis or provide more volumes")
