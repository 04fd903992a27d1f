"""Training batches through torch.utils.data: random crops of lazily read slices, a DistributedSampler, workers.

The arrays are `src.data.prepared.open_split`'s memory maps (or any indexable arrays): a
batch reads its own slices and nothing else, so memory does not grow with the cohort.

Determinism by construction, which is what resume and DDP need:
- epoch e visits the slices in DistributedSampler's permutation for (seed, e), the same
  permutation whatever the number of ranks;
- the random crop (position, flip, ...) of slice i in epoch e is drawn from
  `np.random.default_rng([seed, e, i])`, whichever rank or worker reads it.
So the global batch of step s is a function of (seed, s) alone: a resumed run restarts the
stream at its step with no sampler state to save, and with N ranks rank r reads exactly the
items r, r + N, r + 2N, ... of the batch one process would read (DistributedSampler's
interleaving; `Distributed.gather_batch` puts them back in that order).
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from src.config import ConfigError
from src.data.mapped import release_pages
from src.data.prepared import check_labels, load_split, open_split
from src.training.distributed import Distributed

MONITORING_SLICES = 64
RELEASE_ABOVE = 256 << 20

Slices = Mapping[str, np.ndarray]  # key -> one slice's arrays, e.g. {"hr": (1, H, W), "lr": (1, h, w)}
CropFn = Callable[[Slices, np.random.Generator], tuple[torch.Tensor, ...]]


class SliceCrops(Dataset):
    """Item (epoch, i): `crop(slice index[i] of every array, rng(seed, epoch, i))`.

    `index` maps dataset positions to rows of the arrays (a data.train_fraction subset).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], crop: CropFn, seed: int, index: np.ndarray | None = None,
                 source: str = "the training arrays", files: Mapping[str, str] | None = None):
        lengths = {key: len(array) for key, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{source}: arrays of one dataset differ in length: {lengths}")
        self.arrays, self.crop, self.seed, self.source = dict(arrays), crop, seed, source
        # What an error calls each array: its file (<source>/<key>.npy unless `files` says otherwise).
        self.files = {key: (files or {}).get(key, f"{source}/{key}.npy") for key in self.arrays}
        self.total = next(iter(lengths.values()))  # slices in the arrays; len(self): those `index` keeps
        self.index = np.arange(self.total) if index is None else np.asarray(index)
        # Released after every item: maps of RELEASE_ABOVE bytes or more. A smaller map, wholly mapped, stays small;
        # and releasing costs the next read its page faults again (+0.08 ms an SR item, 1 % of a PSNR step).
        self.large_maps = [a for a in self.arrays.values() if getattr(a, "_mmap", None) is not None
                           and a.nbytes >= RELEASE_ABOVE]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, i = item
        row = int(self.index[i])
        # Copied out, then the large maps' pages released: a faulted page comes mapped with its neighbours (whole
        # large folios of the page cache), and every page a map has touched counts in RSS until it is released,
        # so over a long run on a large cohort RSS would climb towards the size of the training arrays.
        slices = {key: np.array(array[row]) for key, array in self.arrays.items()}
        release_pages(*self.large_maps)
        for key, values in slices.items():
            # Read lazily, so checked here: one slice costs microseconds, a whole cohort up front would not.
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(f"{self.files[key]}: slice {row} contains NaN or Inf (re-run `dvc repro prepare`)")
            if key.endswith("labels"):
                check_labels(values, self.files[key], row)
        return self.crop(slices, np.random.default_rng([self.seed, epoch, i]))


class EpochItems(Sampler):
    """(epoch, i) for this rank's share of epoch `epoch` (DistributedSampler's), from item `skip` on."""

    def __init__(self, n: int, dist: Distributed, seed: int):
        # drop_last: every rank gets n // N items, so no rank repeats another's (padding would).
        self.sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.epoch, self.skip = 0, 0

    def start_at(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position, i in enumerate(self.sampler):
            if position >= self.skip:
                yield self.epoch, i

    def __len__(self) -> int:
        return len(self.sampler) - self.skip


class BatchStream:
    """`batch(step)`: this rank's part of the global batch of `step`, as a tuple of tensors.

    Sequential calls read through one DataLoader iterator; a call for another step (the
    first call after a resume, or after the NaN guard rolled the state back) restarts the
    stream there. An epoch is the floor of (slices / global batch) steps (the last
    incomplete batch is dropped, as DataLoader's drop_last).
    """

    def __init__(self, dataset: SliceCrops, global_batch: int, dist: Distributed, seed: int, workers: int,
                 batch_key: str):
        self.per_rank = dist.per_rank_batch(global_batch, batch_key)
        self.steps_per_epoch = len(dataset) // global_batch
        if self.steps_per_epoch == 0:
            subset = (f" (data.train_fraction keeps {len(dataset)} of {dataset.total})"
                      if len(dataset) < dataset.total else "")
            raise ConfigError(f"{batch_key}: the global batch {global_batch} is larger than the {len(dataset)} "
                              f"training slices{subset}")
        self.items = EpochItems(len(dataset), dist, seed)
        # A generator of its own: DataLoader draws a worker base seed from it at every new iterator,
        # which would otherwise advance the global RNG (DiffAugment's) whenever the stream restarts.
        self.loader = DataLoader(dataset, batch_size=self.per_rank, sampler=self.items, drop_last=True,
                                 num_workers=workers, persistent_workers=workers > 0,
                                 generator=torch.Generator().manual_seed(seed))
        self._iterator: Iterator | None = None
        self._next_step = -1

    def _epochs_from(self, step: int) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch, skip = divmod(step, self.steps_per_epoch)
        while True:
            self.items.start_at(epoch, skip * self.per_rank)
            for k, batch in enumerate(self.loader):
                if skip + k >= self.steps_per_epoch:
                    break  # with fewer ranks' items left than a batch: drop_last already did; belt and braces
                yield batch
            epoch, skip = epoch + 1, 0

    def batch(self, step: int) -> Sequence[torch.Tensor]:
        if step != self._next_step or self._iterator is None:
            self._iterator = self._epochs_from(step)
        self._next_step = step + 1
        return next(self._iterator)


def monitoring_slices(split_dir, keys: tuple[str, ...], limit: int = MONITORING_SLICES) -> dict[str, torch.Tensor]:
    """At most `limit` evenly spaced slices of a split, in memory: the sample grids and the validation
    numbers a training stage logs. A cohort's whole val split would grow with the cohort; `evaluate`
    scores every slice. Same types and checks as `load_split`.
    """
    n = len(next(iter(open_split(split_dir, keys).values())))
    rows = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
    return load_split(split_dir, keys, rows)


# --- crops: one slice at a time, drawn from the item's own rng ------------------------------------

def _dihedral(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    x = np.rot90(x, k, axes=(-2, -1))
    return x[..., ::-1] if flip else x


def _tensor(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def paired_crop(scale: int, hr_crop: int) -> CropFn:
    """SR triples: an LR crop of hr_crop/scale px at (y, x) and the naive and HR crops at (y*scale, x*scale),
    under one random dihedral transform (flips/rot90: no preferred in-plane orientation for SR)."""
    lr_crop = hr_crop // scale

    def crop(s: Slices, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        _, h, w = s["lr"].shape
        if lr_crop > min(h, w):
            raise ValueError(f"train.sr.crop_size {hr_crop} is larger than the HR images ({h * scale}x{w * scale})")
        y, x = int(rng.integers(h - lr_crop + 1)), int(rng.integers(w - lr_crop + 1))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        hr_window = (slice(None), slice(y * scale, (y + lr_crop) * scale), slice(x * scale, (x + lr_crop) * scale))
        return (_tensor(_dihedral(s["lr"][:, y:y + lr_crop, x:x + lr_crop], k, flip)),
                _tensor(_dihedral(s["naive"][hr_window], k, flip)),
                _tensor(_dihedral(s["hr"][hr_window], k, flip)))
    return crop


def image_crop(size: int, image_key: str, labels_key: str | None = None) -> CropFn:
    """A random size x size crop and left-right flip of one image (1, H, W) and, aligned, its labels (H, W).

    Only left-right flips: brain slices are left-right symmetric but not up-down.
    """
    def crop(s: Slices, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        image = s[image_key]
        _, h, w = image.shape
        if size > min(h, w):
            raise ValueError(f"crop size {size} is larger than the images ({h}x{w})")
        y, x, flip = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1)), bool(rng.integers(2))
        window = (slice(y, y + size), slice(x, x + size))
        out = [_tensor(_dihedral(image[(slice(None), *window)], 0, flip))]
        if labels_key is not None:
            out.append(_tensor(_dihedral(s[labels_key][window], 0, flip), torch.int64))
        return tuple(out)
    return crop
