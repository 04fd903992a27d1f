"""Reading the prepared arrays (data/prepared/<set>/<split>/<key>.npy) with clear errors.

Storage: one uncompressed `.npy` per array so that a split can be memory-mapped and a
batch of slices read without loading the split (`open_split`). Chosen by measurement
(benchmarks/storage_format.py, a 500 MiB split, 20 random batches of 16 slices, 2-core
CPU): npz read eagerly took 5.7 s to open and grew the reader's RSS by 503 MiB (the whole
split); npy memory-mapped opened in 1 ms, read a batch in 15 ms from disk and grew RSS by
40 MiB (only the pages the batches touched). zarr would add chunked compression but is
not a dependency; `.npy` needs nothing beyond numpy and keeps dtypes, shapes and values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from src.data.labels import CLASS_NAMES

PREPARED = Path("data/prepared")
_DIGEST_BLOCK = 1 << 20
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_npy(path: Path) -> None:
    """ValueError naming `path` when its header is unreadable or promises more bytes than the file holds."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _HEADER_READERS[version](f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or unreadable prepared array: {err}") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: holds Python objects, not a numeric array")
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise ValueError(f"{path}: truncated prepared array: header says {shape} {dtype} ({needed} bytes), "
                         f"the file holds {size} (re-run `dvc repro prepare`)")


def open_split(split_dir: Path | str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read-only memory maps of `keys` (<split_dir>/<key>.npy): nothing is read into RAM.

    Raises FileNotFoundError / ValueError whose message starts with the offending path: a
    missing split folder or key file, a truncated or corrupt file, an empty array, or arrays
    of different lengths on one side of the split (the sim2real real_* arrays are the other side).
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: prepared split not found (run `dvc repro prepare`)")
    out = {}
    for key in keys:
        path = split_dir / f"{key}.npy"
        if not path.is_file():
            have = sorted(p.stem for p in split_dir.glob("*.npy"))
            raise FileNotFoundError(f"{path}: prepared array '{key}' not found (the split has {have})")
        _check_npy(path)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: corrupt or unreadable prepared array: {err}") from None
        if array.ndim == 0 or len(array) == 0:
            raise ValueError(f"{path}: '{key}' holds no images")
        out[key] = array
    # A sim-to-real split holds two unpaired sets: the sim side (sim, classical, sim_labels) and the
    # real side (real, real_labels, real_*), of different sizes. Within a side lengths must agree.
    for side in (True, False):
        lengths = {key: len(a) for key, a in out.items() if key.startswith("real") == side}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{split_dir}: arrays of one split differ in length: {lengths}")
    return out


def check_labels(values: np.ndarray, path: Path | str, first_row: int = 0) -> None:
    """ValueError naming `path` and the first slice whose labels fall outside the classes 0..len(CLASS_NAMES) - 1.

    values: (N, H, W) or one slice (H, W) of a `*labels` array, rows numbered from `first_row`. An out-of-range
    label would crash a loss deep in torch, or, in the Dice counts (one flat bincount over slice * C + class),
    silently move counts from one slice into the next."""
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels must be integers, got {values.dtype} (re-run `dvc repro prepare`)")
    per_slice = values.reshape(len(values), -1) if values.ndim == 3 else values.reshape(1, -1)
    bad = (per_slice < 0).any(axis=1) | (per_slice >= len(CLASS_NAMES)).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        wrong = per_slice[row][(per_slice[row] < 0) | (per_slice[row] >= len(CLASS_NAMES))]
        raise ValueError(f"{path}: slice {first_row + row} has label {int(wrong[0])}, outside the classes "
                         f"0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)}); re-run `dvc repro prepare`")


def load_split(split_dir: Path | str, keys: tuple[str, ...], rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Load `keys` of one split (only `rows` of it, when given) into RAM. Images come back float32
    (N, 1, H, W), keys ending in "labels" int64 (N, H, W).

    Raises what `open_split` raises, and ValueError naming the file and key for NaN or Inf, or the file and
    slice for a label outside the classes (`check_labels`).
    """
    split_dir = Path(split_dir)
    out = {}
    for key, array in open_split(split_dir, keys).items():
        if rows is not None:
            array = array[rows]  # from the memory map: only these rows are read
        if key.endswith("labels"):
            check_labels(array, split_dir / f"{key}.npy")
            out[key] = torch.from_numpy(array.astype(np.int64))
        else:
            array = np.array(array, dtype=np.float32)  # a writable copy: torch warns on read-only memory
            if not np.isfinite(array).all():
                raise ValueError(f"{split_dir / f'{key}.npy'}: '{key}' contains NaN or Inf")
            out[key] = torch.from_numpy(array)
    return out


def split_digest(split_dir: Path | str) -> str:
    """sha256 over a split's files in name order (each name, size, then its bytes): the training fingerprint."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: prepared split not found (run `dvc repro prepare`)")
    digest = hashlib.sha256()
    for path in sorted(p for p in split_dir.iterdir() if p.is_file()):
        # The size too: name and bytes alone could be re-cut into another (name, bytes) sequence.
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while block := f.read(_DIGEST_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def load_meta(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata not found (run `dvc repro prepare`)")
    return json.loads(path.read_text())
