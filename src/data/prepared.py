"""Reading the prepared arrays (data/prepared/<set>/<split>/<key>.npy) and metadata with clear errors.

Storage: one uncompressed `.npy` per array so that a split can be memory-mapped and a
batch of slices read without loading the split (`open_split`). Chosen by measurement
(benchmarks/storage_format.py, a 500 MiB split, 20 random batches of 16 slices, 2-core
CPU): npz read eagerly took 5.7 s to open and grew the reader's RSS by 503 MiB (the whole
split); npy memory-mapped opened in 1 ms, read a batch in 15 ms from disk and grew RSS by
40 MiB (only the pages the batches touched). zarr would add chunked compression but is
not a dependency; `.npy` needs nothing beyond numpy and keeps dtypes, shapes and values.

Every stage reads prepared data through this module, so the layout prepare writes
(src/data/sets.py) is checked here once: each array's shape and dtype against `LAYOUT`, and
each meta.json against `META_KEYS`. A file that does not match is named with what was
expected and found, and `dvc repro prepare` rebuilds it; a sim2real set that prepare left
empty (inputs without tissue labels) is named as such, since a rebuild cannot fill it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from src.data.labels import CLASS_NAMES

PREPARED = Path("data/prepared")
REBUILD = "re-run `dvc repro prepare` to rebuild it"
_DIGEST_BLOCK = 1 << 20
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class Layout(NamedTuple):
    """One prepared array as src/data/sets.py writes it. `dims`: its shape, sizes named by letter (keys that
    share a letter must agree on it) or fixed; `kinds`: the numpy dtype kinds accepted."""
    dims: tuple[str | int, ...]
    kinds: str


# In this order a letter is set by the first key holding it, so each side's image comes before the arrays that
# must match it. N: SR slices; M and K: the sim and the real side of a sim2real split (unpaired, of any sizes).
LAYOUT = {
    "hr": Layout(("N", 1, "H", "W"), "f"),
    "lr": Layout(("N", 1, "h", "w"), "f"),  # h = H / data.scale: checked where the scale is known
    "naive": Layout(("N", 1, "H", "W"), "f"),
    "slice_index": Layout(("N",), "iu"),
    "volume_index": Layout(("N",), "iu"),
    "axis": Layout(("N",), "iu"),
    "sim": Layout(("M", 1, "H", "W"), "f"),
    "classical": Layout(("M", 1, "H", "W"), "f"),
    "sim_labels": Layout(("M", "H", "W"), "iu"),
    "real": Layout(("K", 1, "H", "W"), "f"),
    "real_labels": Layout(("K", "H", "W"), "iu"),
    "real_slice_index": Layout(("K",), "iu"),
    "real_volume_index": Layout(("K",), "iu"),
}
_KIND_NAMES = {"f": "float", "iu": "integer"}

# The keys stages read from <set>/meta.json (src/data/sets.py writes them), each with what it must hold.
META_KEYS: dict[str, dict[str, tuple[str, Callable[[Any], bool]]]] = {
    "sr": {"scale": ("a positive integer", lambda v: type(v) is int and v > 0),
           "degradation": ("a string", lambda v: isinstance(v, str))},
    "sim2real": {"written": ("true or false", lambda v: isinstance(v, bool)),
                 "class_names": (f"the classes {list(CLASS_NAMES)} (src/data/labels.py)",
                                 lambda v: v == list(CLASS_NAMES))},
}
NO_SIM2REAL = (
    "the prepared data has no sim-to-real split: prepare writes none when the input has no tissue labels, so "
    "re-running it cannot make one. Supply a label map per image in data.folder's labels/ (same names; "
    "0 background, 1 CSF, 2 grey matter, 3 white matter), then `dvc repro`; without labels only the "
    "super-resolution training applies (`dvc repro train_sr`)")


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy file; ValueError naming `path` when the header is unreadable or promises more
    bytes than the file holds."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _HEADER_READERS[version](f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or unreadable prepared array: {err}; {REBUILD}") from None
    if dtype.hasobject:  # pickled: its size says nothing, and it is refused by dtype
        return shape, dtype
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise ValueError(f"{path}: truncated prepared array: header says {shape} {dtype} ({needed} bytes), "
                         f"the file holds {size}; {REBUILD}")
    return shape, dtype


def _shape_text(dims) -> str:
    return f"({', '.join(str(d) for d in dims)}{',' if len(dims) == 1 else ''})"


def check_layout(split_dir: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """ValueError naming the first file of `split_dir` whose (shape, dtype) in `headers` does not fit `LAYOUT`:
    the wrong number of axes (an image without its channel axis), a dtype of another kind (int or object
    images, float labels), or a size that differs from the array that set it (labels of another H x W than
    their images, a real_slice_index of another length than real). Keys outside `LAYOUT` are not checked."""
    sizes: dict[str, tuple[int, str]] = {}  # letter -> (size, key that set it)
    for key, layout in LAYOUT.items():
        if key not in headers:
            continue
        shape, dtype = headers[key]
        path = split_dir / f"{key}.npy"
        expected = f"{_KIND_NAMES[layout.kinds]} {_shape_text(layout.dims)}"
        if dtype.kind not in layout.kinds:
            raise ValueError(f"{path}: expected '{key}' as {expected}, found dtype {dtype} {_shape_text(shape)}; "
                             f"{REBUILD}")
        if len(shape) != len(layout.dims):
            hint = " (no channel axis)" if len(shape) == len(layout.dims) - 1 and 1 in layout.dims else ""
            raise ValueError(f"{path}: expected '{key}' as {expected}, {len(layout.dims)} axes, found "
                             f"{_shape_text(shape)}{hint}; {REBUILD}")
        if any(d != n if isinstance(d, int) else d in sizes and sizes[d][0] != n for d, n in zip(layout.dims, shape)):
            concrete = tuple(sizes[d][0] if d in sizes else d for d in layout.dims)
            sources = sorted({f"{sizes[d][1]}.npy" for d in layout.dims if d in sizes})
            if sources:  # the sizes set by the arrays before it
                expected += f" = {_shape_text(concrete)} (sizes as in {', '.join(sources)})"
            raise ValueError(f"{path}: expected '{key}' as {expected}, found {_shape_text(shape)}; {REBUILD}")
        for d, n in zip(layout.dims, shape):
            if isinstance(d, str):
                sizes.setdefault(d, (n, key))


def _no_sim2real(set_dir: Path) -> bool:
    """True when <set_dir>/meta.json is prepare's record of a sim2real set it did not write (no tissue labels)."""
    try:
        meta = json.loads((set_dir / "meta.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("written") is False


def open_split(split_dir: Path | str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read-only memory maps of `keys` (<split_dir>/<key>.npy): nothing is read into RAM.

    Every array of the split that `LAYOUT` knows is checked by its header (microseconds), read or not, so a
    split that is not as prepare wrote it is refused by every stage (`check_layout`). Raises FileNotFoundError /
    ValueError whose message starts with the offending path: a missing split folder (or a sim2real set
    prepare did not write: `NO_SIM2REAL`) or key file, a truncated or corrupt file, a shape or dtype that
    does not fit `LAYOUT`, or an empty array.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        if _no_sim2real(split_dir.parent):
            raise FileNotFoundError(f"{split_dir.parent}: {NO_SIM2REAL}")
        raise FileNotFoundError(f"{split_dir}: prepared split not found (run `dvc repro prepare`)")
    for key in keys:
        path = split_dir / f"{key}.npy"
        if not path.is_file():
            have = sorted(p.stem for p in split_dir.glob("*.npy"))
            raise FileNotFoundError(f"{path}: prepared array '{key}' not found (the split has {have}); {REBUILD}")
    headers = {key: _read_header(split_dir / f"{key}.npy") for key in dict.fromkeys((*LAYOUT, *keys))
               if key in keys or (split_dir / f"{key}.npy").is_file()}
    for key in keys:
        if len(headers[key][0]) == 0 or headers[key][0][0] == 0:
            raise ValueError(f"{split_dir / f'{key}.npy'}: '{key}' holds no images; {REBUILD}")
    check_layout(split_dir, headers)
    out = {}
    for key in keys:
        path = split_dir / f"{key}.npy"
        if headers[key][1].hasobject:
            raise ValueError(f"{path}: holds Python objects, not a numeric array; {REBUILD}")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: corrupt or unreadable prepared array: {err}; {REBUILD}") from None
        out[key] = array
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
                raise ValueError(f"{split_dir / f'{key}.npy'}: '{key}' contains NaN or Inf; {REBUILD}")
            out[key] = torch.from_numpy(array)
    return out


def check_scale(meta_path: Path | str, split_dir: Path | str, lr_shape: tuple[int, ...], hr_shape: tuple[int, ...],
                scale: int) -> None:
    """ValueError naming `meta_path` when its scale does not turn the split's LR size into its HR size: a meta.json
    edited or left from another prepare run. Stages check this before training or scoring anything."""
    lr, hr = tuple(lr_shape[-2:]), tuple(hr_shape[-2:])
    if (lr[0] * scale, lr[1] * scale) != hr:
        raise ValueError(f"{meta_path}: says x{scale}, but in {split_dir} LR {lr} x{scale} does not give HR {hr}; "
                         f"{REBUILD}")


# split_digest's results in this process, by the split's files as stat() sees them (name, size, mtime, inode):
# a stage asks for the train split's digest up to three times (fingerprint, the model it loads, the model it
# saves), and each read is the whole split, gigabytes for a cohort of a thousand subjects. Only splits of at
# least _CACHED_BYTES are kept: a file rewritten in place with its size within one mtime tick (a few ms) would
# look unchanged, and a small split costs less to hash again than that risk.
_DIGESTS: dict[tuple, str] = {}
_CACHED_BYTES = 64 * 2**20


def split_digest(split_dir: Path | str) -> str:
    """sha256 over a split's files in name order (each name, size, then its bytes): the training fingerprint.

    A split of _CACHED_BYTES or more is read once per process while its files stay as they are: a file
    rewritten, replaced, grown or touched since (another size, mtime or inode) is hashed again."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        if _no_sim2real(split_dir.parent):
            raise FileNotFoundError(f"{split_dir.parent}: {NO_SIM2REAL}")
        raise FileNotFoundError(f"{split_dir}: prepared split not found (run `dvc repro prepare`)")
    paths = sorted(p for p in split_dir.iterdir() if p.is_file())
    stats = [path.stat() for path in paths]
    key = (str(split_dir.resolve()),
           tuple((path.name, st.st_size, st.st_mtime_ns, st.st_ino) for path, st in zip(paths, stats)))
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    for path, st in zip(paths, stats):
        # The size too: name and bytes alone could be re-cut into another (name, bytes) sequence.
        digest.update(f"{path.name}\0{st.st_size}\0".encode())
        with open(path, "rb") as f:
            while block := f.read(_DIGEST_BLOCK):
                digest.update(block)
    if sum(st.st_size for st in stats) >= _CACHED_BYTES:
        _DIGESTS[key] = digest.hexdigest()
    return digest.hexdigest()


def load_meta(path: Path | str) -> dict:
    """<set>/meta.json as a dict, holding every key `META_KEYS` lists for its set (the folder's name: sr or
    sim2real) with a value of the kind stages read.

    Raises FileNotFoundError for a missing file or a sim2real set that prepare did not write (`NO_SIM2REAL`),
    and ValueError naming the file (and key) for a file that is not JSON, not an object, lacks a key or holds
    a value of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata not found (run `dvc repro prepare`)")
    try:
        meta = json.loads(path.read_bytes())
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror}); {REBUILD}") from None
    except ValueError as err:  # JSONDecodeError, or bytes that are no text at all
        raise ValueError(f"{path}: not valid JSON ({err}); {REBUILD}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: holds {json.dumps(meta)[:40]}, not a JSON object; {REBUILD}")
    required = META_KEYS.get(path.parent.name, {})
    if path.parent.name == "sim2real" and meta.get("written") is False:
        raise FileNotFoundError(f"{path.parent}: {NO_SIM2REAL}")
    for key, (what, fits) in required.items():
        if key not in meta:
            raise ValueError(f"{path}: lacks the key '{key}' ({what}); {REBUILD}")
        if not fits(meta[key]):
            raise ValueError(f"{path}: '{key}' must be {what}, found {json.dumps(meta[key])[:80]}; {REBUILD}")
    return meta
