"""Leakage across splits: held-out slices that are copies of other splits' slices, exact, near or mirrored.

The slab and volume splits keep neighbouring slices apart, but they cannot see that two
inputs hold the same images: a series exported twice, a left-right symmetric template
sliced sagittally (slice x is slice -x), a mirrored copy. Each slice gets a cheap
descriptor (block means at DESCRIPTOR_SIZE px, minus a Gaussian blur of them so that the
brain's outline, which every slice shares, does not dominate; zero mean, unit norm); two
slices are duplicates when their bytes are equal or their descriptors correlate at
`NEAR_DUPLICATE_CORRELATION` or more, in either orientation of each in-plane axis.

On the demo template (1 mm axial slices, 128 px) neighbouring slices correlate at 0.95-0.99,
slices four apart (across a split gap of 3) at most 0.86, and a slice with Gaussian noise of
2.5 % of the intensity range added to it at 0.996 with itself.

The splits may be memory-mapped files of a whole cohort: slices are hashed and described
CHUNK at a time; with a scratch folder the descriptors (DESCRIPTOR_SIZE**2 float64 per slice) go to
memory-mapped files there, and the correlation runs block by block (CHUNK held-out rows against
OTHER_CHUNK rows of the other split, keeping each held-out row's best match), so memory is
O(block) whatever the cohort. Time is O(N_held_out x N_other) per orientation: the blocks are
matrix products, about 2 x 3 x 1024 flop per pair of slices (benchmarks/scale.py states the
measured cost). Slices dropped by data.leakage: drop are left out of new memory-mapped copies.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from src.atomic import reserved_memmap
from src.data.mapped import release_pages
from src.data.io import DataError

NEAR_DUPLICATE_CORRELATION = 0.97
DESCRIPTOR_SIZE = 32   # px; images are resized to data.image_size, a multiple of 16
HIGH_PASS_SIGMA = 1.0  # px at DESCRIPTOR_SIZE
# Held-out split -> the splits it must not share images with (checked in this order).
PAIRS = (("test", "train"), ("test", "val"), ("val", "train"))
CHUNK = 512  # held-out slices per block
OTHER_CHUNK = 8192  # slices of the other split per block: a block of correlations is CHUNK x OTHER_CHUNK float64
MIRRORS = {"as is": (), "flipped left-right": (-1,), "flipped top-bottom": (-2,)}
METHOD = (f"per slice: sha1 of the pixels, and the correlation of {DESCRIPTOR_SIZE}-px block means minus their "
          f"Gaussian blur (sigma {HIGH_PASS_SIGMA} px), as is and flipped along each in-plane axis; duplicate when "
          f"the bytes are equal or the correlation is >= {NEAR_DUPLICATE_CORRELATION}")


@dataclass(frozen=True)
class Duplicate:
    """Slice `held_out` (position in its split) copies slice `other` of split `other_split`."""

    split: str
    held_out: int
    other_split: str
    other: int
    kind: str          # "exact" | "near (r=0.991)" | "mirror (flipped left-right, r=1.000)"


def descriptors(images: np.ndarray, flip: tuple[int, ...] = ()) -> np.ndarray:
    """(N, 1, S, S) images -> (N, D) unit-norm, zero-mean detail descriptors (zeros for a flat slice)."""
    x = images[:, 0].astype(np.float64)
    if flip:
        x = np.flip(x, axis=flip)
    n, h, w = x.shape
    size = next(s for s in (DESCRIPTOR_SIZE, 16, 8, 4, 2, 1) if h % s == 0 and w % s == 0)
    x = x.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
    x = x - gaussian_filter(x, (0, HIGH_PASS_SIGMA, HIGH_PASS_SIGMA), mode="nearest")
    d = x.reshape(n, -1)
    d = d - d.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return np.divide(d, norm, out=np.zeros_like(d), where=norm > 1e-9)


def _descriptors(images: np.ndarray, flip: tuple[int, ...] = (), path: Path | None = None) -> np.ndarray:
    """`descriptors`, CHUNK slices at a time (each row depends on its own slice only); with `path`, written to a
    memory-mapped file there instead of held in RAM."""
    first = descriptors(np.asarray(images[:1]), flip)
    out = (np.empty((len(images), first.shape[1])) if path is None
           else reserved_memmap(path, np.float64, (len(images), first.shape[1])))
    for i in range(0, len(images), CHUNK):
        out[i:i + CHUNK] = descriptors(np.asarray(images[i:i + CHUNK]), flip)
        release_pages(images, out)  # RSS stays at a block (src/data/mapped.py)
    return out


def _hashes(images: np.ndarray) -> list[bytes]:
    """sha1 of each slice's pixels, CHUNK slices read at a time (20 bytes per slice held)."""
    out = []
    for i in range(0, len(images), CHUNK):
        out += [hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
                for image in np.asarray(images[i:i + CHUNK])]
        release_pages(images)
    return out


def _best_matches(base: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `base`, the row of `other` it correlates with most and that correlation, block by block:
    the (N, M) correlation is never held whole. Ties keep the first row, as argmax over the whole row would."""
    best, top = np.zeros(len(base), np.int64), np.full(len(base), -np.inf)
    for start in range(0, len(base), CHUNK):
        rows = np.asarray(base[start:start + CHUNK])
        for other_start in range(0, len(other), OTHER_CHUNK):
            corr = rows @ np.asarray(other[other_start:other_start + OTHER_CHUNK]).T
            block_best = corr.argmax(axis=1)
            block_top = corr[np.arange(len(corr)), block_best]
            better = block_top > top[start:start + CHUNK]
            top[start:start + CHUNK][better] = block_top[better]
            best[start:start + CHUNK][better] = block_best[better] + other_start
            release_pages(other)
        release_pages(base)
    return best, top


def find_duplicates(held_out: np.ndarray, other: np.ndarray, split: str, other_split: str,
                    threshold: float = NEAR_DUPLICATE_CORRELATION, scratch: Path | None = None) -> list[Duplicate]:
    """Every slice of `held_out` (N, 1, S, S) that duplicates a slice of `other` (M, 1, S, S), with its best match.
    scratch: a folder for the descriptor files (None: in RAM)."""
    if len(held_out) == 0 or len(other) == 0:
        return []
    found: dict[int, Duplicate] = {}
    other_hashes: dict[bytes, int] = {}
    for j, h in enumerate(_hashes(other)):
        other_hashes[h] = j  # the last copy, as before
    for i, h in enumerate(_hashes(held_out)):
        if h in other_hashes:
            found[i] = Duplicate(split, i, other_split, other_hashes[h], "exact")
    del other_hashes

    def file(name: str) -> Path | None:
        return None if scratch is None else scratch / f"leakage-{split}-{other_split}-{name}.npy"
    base = _descriptors(held_out, (), file("held-out"))
    for name, axes in MIRRORS.items():
        other_desc = _descriptors(other, axes, file("other"))
        best, top = _best_matches(base, other_desc)
        del other_desc  # its file is rewritten for the next orientation
        for i in np.flatnonzero(top >= threshold):
            if int(i) in found:
                continue
            r = float(top[i])
            kind = f"near (r={r:.3f})" if not axes else f"mirror ({name}, r={r:.3f})"
            found[int(i)] = Duplicate(split, int(i), other_split, int(best[i]), kind)
    return [found[i] for i in sorted(found)]


class LeakageError(DataError):
    """Held-out slices duplicate slices of another split; the message starts with the held-out file."""


def _ranges(indices: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            out.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(out)


def check_splits(parts: dict[str, dict[str, np.ndarray]], sources: list[str], action: str,
                 threshold: float = NEAR_DUPLICATE_CORRELATION,
                 scratch: Path | None = None) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Look for held-out slices that duplicate another split's (PAIRS), then fail or drop them.

    parts: split -> arrays as src/data/stacks.py gathers them (images (N, 1, S, S), labels,
    slice_index, volume_index, axis). sources: the file of each volume index. action: "fail"
    raises LeakageError with the count and the slice indices per file; "drop" removes the
    duplicating slices from val and test. scratch: a folder for the descriptor files and the
    kept rows' copies (None: both in RAM). Returns the (possibly reduced) parts and the record
    for the manifest.
    """
    start = time.perf_counter()
    found = {f"{a}~{b}": find_duplicates(parts[a]["images"], parts[b]["images"], a, b, threshold, scratch)
             for a, b in PAIRS}
    # The one O(N^2) part of prepare: its time is recorded apart (benchmarks/scale.py).
    report = {"method": METHOD, "threshold": threshold, "action": action,
              "duplicates": {key: len(dupes) for key, dupes in found.items()}, "dropped": {"val": [], "test": []},
              "wall_time_s": round(time.perf_counter() - start, 2)}
    dupes = [d for group in found.values() for d in group]
    if not dupes:
        return parts, report

    def where(split: str, position: int) -> tuple[int, int, int]:
        """(volume index, axis, slice index) of a slice."""
        arrays = parts[split]
        return (int(arrays["volume_index"][position]), int(arrays["axis"][position]),
                int(arrays["slice_index"][position]))

    groups: dict[tuple, list[tuple[int, str]]] = {}
    for d in dupes:
        (volume, axis, index), (other, other_axis, _) = where(d.split, d.held_out), where(d.other_split, d.other)
        key = (d.split, sources[volume], axis, d.other_split, sources[other], other_axis)
        groups.setdefault(key, []).append((index, d.kind))
    lines = []
    for (split, src, axis, other_split, other_src, other_axis), hits in groups.items():
        kinds = sorted({kind.split(" (")[0] for _, kind in hits})
        lines.append(f"{split} slices {_ranges(sorted(i for i, _ in hits))} of {src} (axis {axis}) duplicate "
                     f"{other_split} slices of {other_src} (axis {other_axis}) [{', '.join(kinds)}]")
    counts = ", ".join(f"{key.replace('~', ' in ')}: {n}" for key, n in report["duplicates"].items() if n)
    report["found"] = lines
    if action == "fail":
        first = next(iter(groups))[1]
        raise LeakageError(
            f"{first}: {len(dupes)} held-out slice(s) are copies of slices in another split (exact, near with "
            f"correlation >= {threshold}, or mirrored; {counts}): {'; '.join(lines)}. Anything tuned on val or "
            f"scored on test would be judged on images the model saw. Remove the copies from the inputs, or set "
            f"data.leakage: drop to drop them from the held-out splits")
    drop = {split: sorted({d.held_out for d in dupes if d.split == split}) for split in ("val", "test")}
    kept = dict(parts)
    for split, positions in drop.items():
        report["dropped"][split] = [dict(zip(("volume", "axis", "slice"), where(split, p))) for p in positions]
        keep = np.setdiff1d(np.arange(len(parts[split]["images"])), positions)
        kept[split] = {key: _rows(value, keep, scratch and scratch / f"kept-{split}-{key}.npy")
                       for key, value in parts[split].items()}
        if len(keep) == 0:
            raise LeakageError(f"{sources[where(split, positions[0])[0]]}: every {split} slice is a copy of a slice "
                               f"in another split ({counts}): nothing would be left in {split}")
    return kept, report


def _rows(array: np.ndarray | None, keep: np.ndarray, path: Path | None) -> np.ndarray | None:
    """array[keep]; with `path`, written there CHUNK rows at a time and memory-mapped, never whole in RAM."""
    if array is None or path is None or array.ndim == 1:
        return None if array is None else array[keep]
    out = reserved_memmap(path, array.dtype, (len(keep), *array.shape[1:]))
    for start in range(0, len(keep), CHUNK):
        out[start:start + CHUNK] = array[keep[start:start + CHUNK]]
        release_pages(out, array)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")
