"""The prepared task sets: super-resolution pairs and sim-to-real sets, their metadata and how they are saved.

Arrays per split (S = data.image_size, k = data.scale), images float32 in [-1, 1] with the
background exactly -1:

    sr:        hr (N,1,S,S), lr (N,1,S/k,S/k), naive (N,1,S,S) float32,
               slice_index, volume_index, axis (N,) int
    sim2real:  sim (M,1,S,S), sim_labels (M,S,S) uint8, real (K,1,S,S), real_labels (K,S,S) uint8,
               real_slice_index, real_volume_index (K,) int, classical (M,1,S,S): the sim
               images after the classical translation (blur + foreground histogram matching
               fitted on the train split; src/data/classical.py). train: sim from the train_sim
               slices' labels (deformed variants), real from train_real; val/test: one row
               per slice, sim rendered from that slice's own labels (aligned). Labels of real
               train slices are for evaluation judges only, never a loss.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import torch

from src.atomic import reserved_memmap, write_json
from src.data.mapped import release_pages, take_rows
from src.config import DataConfig, as_dict
from src.data import mr_simulator
from src.data.classical import classical_rendering, fit_classical
from src.data.degrade import degrade, naive_upsample
from src.data.labels import CLASS_NAMES
from src.data.preprocess import BACKGROUND
from src.data.splits import SPLITS

Sets = dict[str, dict[str, np.ndarray]]  # split -> array name -> array
SIM_STREAM = 1  # np.random.default_rng([seed, SIM_STREAM, ...]) draws the simulator's deformations and noise
CHUNK = 256  # slices degraded at a time when streaming; degrade and the noise draws are per slice, so any chunk
             # size gives the same bytes


def sr_set(hr: np.ndarray, data: DataConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """hr (N, 1, S, S) -> hr, lr = degrade(hr) (+ Gaussian noise), naive = matching upsampling of lr."""
    hr_img = torch.from_numpy(hr)
    lr_img = degrade(hr_img, data.scale, data.degradation)
    if data.lr_noise_std > 0:
        lr_img = lr_img + torch.from_numpy(rng.normal(0.0, data.lr_noise_std, tuple(lr_img.shape)).astype(np.float32))
    naive = naive_upsample(lr_img, data.scale, data.degradation)
    return {"hr": hr, "lr": lr_img.numpy().astype(np.float32), "naive": naive.numpy().astype(np.float32)}


def sr_sets(parts: Sets, data: DataConfig, rng: np.random.Generator) -> Sets:
    """`sr_set` of each split's images (train, val, test: one noise stream), with where each slice came from."""
    return {s: {**sr_set(parts[s]["images"], data, rng), "slice_index": parts[s]["slice_index"],
                "volume_index": parts[s]["volume_index"], "axis": parts[s]["axis"]} for s in SPLITS}


def sr_sets_into(folder: Path, parts: Sets, data: DataConfig, rng: np.random.Generator) -> Sets:
    """`sr_sets`, streamed: each split's arrays are written CHUNK slices at a time into
    <folder>/<split>/<key>.npy (the layout of `save_sets`) and come back read-only memory-mapped."""
    out = {}
    for split in SPLITS:
        hr = parts[split]["images"]
        n, size, lr_size = len(hr), hr.shape[-1], hr.shape[-1] // data.scale
        (folder / split).mkdir()
        shapes = {"hr": (n, 1, size, size), "lr": (n, 1, lr_size, lr_size), "naive": (n, 1, size, size)}
        files = {k: reserved_memmap(folder / split / f"{k}.npy", np.float32, shape)  # not sparse: see reserved_memmap
                 for k, shape in shapes.items()}
        for start in range(0, n, CHUNK):
            for key, array in sr_set(np.array(hr[start:start + CHUNK]), data, rng).items():
                files[key][start:start + CHUNK] = array
            release_pages(hr, *files.values())  # RSS stays at a chunk (src/data/mapped.py)
        release_pages(hr)
        for key, array in files.items():
            array.flush()
        del files
        for key in ("slice_index", "volume_index", "axis"):
            np.save(folder / split / f"{key}.npy", parts[split][key], allow_pickle=False)
        out[split] = {k: np.load(folder / split / f"{k}.npy", mmap_mode="r")
                      for k in ("hr", "lr", "naive", "slice_index", "volume_index", "axis")}
    return out


FIT_SLICES = 512  # at most this many slices, a seeded sample, fit a split-level statistic (the simulator's
                  # window, the classical quantile map): memory stays bounded whatever the cohort's size, and a
                  # split this small or smaller is fitted on every slice, exactly as a whole-split fit. 512 slices
                  # hold about 3M foreground pixels at 128 px; 2048 made the classical fit prepare's peak (3.3 GB
                  # of anonymous memory in the main process, benchmarks/scale.py).


POOL_MIN_ROWS = 1024  # fewer simulated rows render in this process: a pool's start (each worker imports torch,
                     # a few seconds) costs more than they do (the demo has 91)


def fit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """The (sorted) rows of an n-row array a split-level fit reads: all of them, or FIT_SLICES drawn by `rng`."""
    return np.arange(n) if n <= FIT_SLICES else np.sort(rng.choice(n, FIT_SLICES, replace=False))


class _SimRows:
    """The simulator's rows of one split, each from its own seeded stream, so any row can be rendered alone, in any
    process, and any chunking or order gives the same bytes: train row r is variant r % variants of train_sim slice
    r // variants, elastically deformed; a val/test row is its real slice's labels, aligned."""

    def __init__(self, labels: np.ndarray, variants: int, deform: bool, data: DataConfig, seed: list[int]):
        self.labels, self.variants, self.deform, self.data, self.seed = labels, variants, deform, data, seed
        self.n = len(labels) * variants

    def job(self, rows: np.ndarray) -> tuple:
        """What `render_job` needs for `rows`: only the label maps they start from, not the split's."""
        first, last = (int(rows.min()) // self.variants, int(rows.max()) // self.variants + 1) if len(rows) else (0, 0)
        return (np.asarray(self.labels[first:last], np.uint8), first, rows, self.variants, self.deform, self.data,
                self.seed)

    def render(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return render_job(self.job(rows))


def render_job(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(label maps (R, S, S) uint8, un-normalised noisy signal (R, S, S) float32) of a `_SimRows.job`'s rows; a
    module-level function so that pool workers can run it."""
    return _render_rows(*job)


def _render_rows(base_labels: np.ndarray, first: int, rows: np.ndarray, variants: int, deform: bool,
                 data: DataConfig, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    size = base_labels.shape[1:]
    labels, signal = np.empty((len(rows), *size), np.uint8), np.empty((len(rows), *size), np.float32)
    for i, row in enumerate(rows):
        rng = np.random.default_rng([*seed, int(row)])
        base = base_labels[int(row) // variants - first:][:1]
        labels[i] = (mr_simulator.elastic_deform_labels(base, data.sim.elastic_magnitude, rng) if deform else base)[0]
        signal[i] = mr_simulator.noisy_signal(labels[i:i + 1], data.sim, rng)[0]
    return labels, signal


def _write_simulated(folder: Path, rows: _SimRows, data: DataConfig, window_rng: np.random.Generator,
                     pool=None) -> None:
    """sim and sim_labels of one split into `folder`: the window (the upper data.percentiles of the foreground
    signal maps to +1) is fitted on `fit_rows`, whose renderings are kept and reused; then CHUNK rows at a time,
    rendered in order by `pool` (a multiprocessing pool; None: in this process)."""
    size = rows.labels.shape[1:]
    sim = reserved_memmap(folder / "sim.npy", np.float32, (rows.n, 1, *size))
    sim_labels = reserved_memmap(folder / "sim_labels.npy", np.uint8, (rows.n, *size))
    if rows.n == 0:
        return
    run = pool.imap if pool is not None else map
    sample = fit_rows(rows.n, window_rng)
    rendered = list(run(render_job, [rows.job(sample[i:i + CHUNK]) for i in range(0, len(sample), CHUNK)]))
    sample_labels = np.concatenate([labels for labels, _ in rendered])
    sample_signal = np.concatenate([signal for _, signal in rendered])
    del rendered
    foreground = sample_labels != 0
    high = mr_simulator.foreground_high(sample_signal, foreground, data.percentiles[1]) if foreground.any() else None
    kept = dict(zip(sample.tolist(), range(len(sample))))
    chunks = [np.arange(start, min(start + CHUNK, rows.n)) for start in range(0, rows.n, CHUNK)]
    fresh = [np.array([r for r in chunk.tolist() if r not in kept], np.int64) for chunk in chunks]
    for chunk, rows_left, (fresh_labels, fresh_signal) in zip(chunks, fresh, run(render_job, map(rows.job, fresh))):
        where = {int(r): i for i, r in enumerate(rows_left)}
        pick = [(sample_labels, sample_signal, kept[r]) if r in kept else (fresh_labels, fresh_signal, where[r])
                for r in chunk.tolist()]
        labels = np.stack([source_labels[i] for source_labels, _, i in pick])
        signal = np.stack([source_signal[i] for _, source_signal, i in pick])
        sim_labels[chunk] = labels
        sim[chunk, 0] = (mr_simulator.scale_from_zero_signal(signal, labels != 0, high) if high is not None
                         else np.float32(BACKGROUND))  # no foreground in the whole sample: an empty rendering
        release_pages(sim, sim_labels, rows.labels)
    sim.flush()
    sim_labels.flush()


def _copy_rows(path: Path, source: np.ndarray, dtype: type) -> None:
    """`source` (possibly a memory map) into a new .npy at `path`, CHUNK rows at a time."""
    out = reserved_memmap(path, dtype, source.shape)
    for start in range(0, len(source), CHUNK):
        out[start:start + CHUNK] = np.asarray(source[start:start + CHUNK]).astype(dtype)
        release_pages(out, source)
    out.flush()


SIM2REAL_KEYS = ("sim", "sim_labels", "real", "real_labels", "real_slice_index", "real_volume_index", "classical")


def sim2real_sets_into(folder: Path, parts: Sets, user_sim: Sets | None, data: DataConfig, seed: int,
                       workers: int = 1) -> Sets:
    """The sim-to-real sets, streamed into <folder>/<split>/<key>.npy (the layout of `save_sets`) and given back
    read-only memory-mapped. train: sim from the train_sim slices' labels (deformed variants) and real from
    train_real; val/test: each slice's real image, labels and a sim image rendered from the same labels. With the
    user's own sim images (`user_sim`), those are the sim side of every split.

    Every array is written CHUNK slices at a time, and each split-level fit (the simulator's window per split, the
    classical quantile map on train) reads at most FIT_SLICES slices, so memory does not grow with the cohort.
    Each simulated row draws from its own stream np.random.default_rng([seed, SIM_STREAM, split, row]); the window's
    sample from [seed, SIM_STREAM, split, 2**32 - 1], the classical map's from [seed, SIM_STREAM, 3]. Rows are
    rendered by `workers` processes (the bytes do not depend on it)."""
    pool = None
    rows = (0 if user_sim is not None else
            len(parts["train_sim"]["labels"]) * data.sim.variants_per_slice + len(parts["val"]["labels"])
            + len(parts["test"]["labels"]))
    if workers > 1 and rows >= POOL_MIN_ROWS:
        # forkserver, as in src/data/stacks.py: a forked child of a process that has run torch can deadlock.
        pool = multiprocessing.get_context("forkserver").Pool(workers)
    try:
        _write_sim2real(folder, parts, user_sim, data, seed, pool)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return {split: {k: np.load(folder / split / f"{k}.npy", mmap_mode="r") for k in SIM2REAL_KEYS}
            for split in SPLITS}


def _write_sim2real(folder: Path, parts: Sets, user_sim: Sets | None, data: DataConfig, seed: int, pool) -> None:
    for index, split in enumerate(SPLITS):
        out = folder / split
        out.mkdir()
        if user_sim is not None:
            real = parts[split]
            _copy_rows(out / "sim.npy", user_sim[split]["images"], np.float32)
            _copy_rows(out / "sim_labels.npy", user_sim[split]["labels"], np.uint8)
        else:
            real = parts["train_real"] if split == "train" else parts[split]
            labels = parts["train_sim"]["labels"] if split == "train" else real["labels"]
            variants = data.sim.variants_per_slice if split == "train" else 1
            stream = [seed, SIM_STREAM, index]
            rows = _SimRows(labels, variants, split == "train", data, stream)
            _write_simulated(out, rows, data, np.random.default_rng([*stream, 2**32 - 1]), pool)
        _copy_rows(out / "real.npy", real["images"], np.float32)
        _copy_rows(out / "real_labels.npy", real["labels"], np.uint8)
        np.save(out / "real_slice_index.npy", np.asarray(real["slice_index"]), allow_pickle=False)
        np.save(out / "real_volume_index.npy", np.asarray(real["volume_index"]), allow_pickle=False)
    train = {k: np.load(folder / "train" / f"{k}.npy", mmap_mode="r") for k in ("sim", "sim_labels", "real",
                                                                                 "real_labels")}
    fit_rng = np.random.default_rng([seed, SIM_STREAM, len(SPLITS)])
    sim_rows, real_rows = fit_rows(len(train["sim"]), fit_rng), fit_rows(len(train["real"]), fit_rng)
    matching = fit_classical(take_rows(train["sim"], sim_rows), take_rows(train["sim_labels"], sim_rows),
                             take_rows(train["real"], real_rows), take_rows(train["real_labels"], real_rows),
                             data.classical_blur_sigma)
    for split in SPLITS:
        sim = np.load(folder / split / "sim.npy", mmap_mode="r")
        labels = np.load(folder / split / "sim_labels.npy", mmap_mode="r")
        classical = reserved_memmap(folder / split / "classical.npy", np.float32, sim.shape)
        for start in range(0, len(sim), CHUNK):  # the blur and the map are per image: any chunk, the same bytes
            classical[start:start + CHUNK] = classical_rendering(np.asarray(sim[start:start + CHUNK]),
                                                                 np.asarray(labels[start:start + CHUNK]), matching,
                                                                 data.classical_blur_sigma)
            release_pages(sim, labels, classical)
        classical.flush()
        del classical


def _counts(arrays: dict[str, np.ndarray]) -> int | dict[str, int]:
    """An sr split counts slices; a sim2real split counts its sim and its real images."""
    return len(arrays["hr"]) if "hr" in arrays else {"sim": len(arrays["sim"]), "real": len(arrays["real"])}


def sr_meta(sr: Sets, data: DataConfig) -> dict:
    """sr/meta.json: scale, degradation, sizes, value range, counts."""
    return {
        "scale": data.scale, "degradation": data.degradation, "image_size": data.image_size,
        "lr_size": data.image_size // data.scale, "lr_noise_std": data.lr_noise_std,
        "value_range": [-1.0, 1.0], "background": BACKGROUND,
        "counts": {s: _counts(sr[s]) for s in SPLITS},
        "note": "hr is in [-1, 1]; lr and naive are not clipped and can overshoot slightly (Gibbs ringing of "
                "k-space truncation), so naive stays the exact matching reconstruction of lr",
    }


def sim2real_meta(s2r: Sets, data: DataConfig, user_sim: bool) -> dict:
    """sim2real/meta.json: class names, counts, where sim came from, simulator parameters and intensities."""
    sim = data.sim
    intensities = mr_simulator.signal_intensities(sim.field_strength, sim.tr_ms, sim.te_ms)
    return {
        "written": True, "class_names": list(CLASS_NAMES), "value_range": [-1.0, 1.0], "background": BACKGROUND,
        "counts": {s: _counts(s2r[s]) for s in SPLITS},
        "sim_source": "user" if user_sim else "simulator",
        "classical": {"blur_sigma": data.classical_blur_sigma, "matched_to": "pooled foreground of the train real slices",
                      "fitted_on": "train"},
        "val_test_aligned": not user_sim,
        "simulator": None if user_sim else {
            **as_dict(sim),
            "tissue_parameters": {v["name"]: {k: x for k, x in v.items() if k != "name"}
                                  for v in mr_simulator.tissue_parameters(sim.field_strength).values()},
            "intensities": {CLASS_NAMES[k]: v for k, v in intensities.items()},
        },
        "note": "real_labels of the train split are for evaluation judges / oracles only, never a training loss",
    }


def not_written_meta(reason: str) -> dict:
    """sim2real/meta.json when there are no sets (the folder is still an output)."""
    return {"written": False, "reason": reason, "class_names": list(CLASS_NAMES)}


def value_range(array: np.ndarray) -> list[float] | None:
    """[min, max] of `array`, read CHUNK rows at a time (pages released: it may be a cohort's memory map)."""
    if array.size == 0:
        return None
    low, high = np.inf, -np.inf
    for start in range(0, len(array), CHUNK):
        rows = np.asarray(array[start:start + CHUNK])
        low, high = min(low, float(rows.min())), max(high, float(rows.max()))
        release_pages(array)
    return [low, high]


def describe(sets: Sets) -> dict:
    """Per split: the count and each array's shape, dtype and value range (for the manifest)."""
    return {split: {"count": _counts(arrays),
                    "arrays": {key: {"shape": list(a.shape), "dtype": str(a.dtype), "range": value_range(a)}
                               for key, a in arrays.items()}}
            for split, arrays in sets.items()}


def save_sets(folder: Path, sets: Sets | None, meta: dict) -> None:
    """<split>/<key>.npy for each array of each split of `sets` (none when None) and meta.json, into
    the existing `folder` (one file per array so readers can memory-map it: src/data/prepared.py)."""
    for split, arrays in (sets or {}).items():
        (folder / split).mkdir()
        for key, array in arrays.items():
            np.save(folder / split / f"{key}.npy", array, allow_pickle=False)
    write_json(folder / "meta.json", meta)
