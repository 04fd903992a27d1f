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

from pathlib import Path

import numpy as np
import torch

from src.atomic import reserved_memmap, write_json
from src.config import DataConfig, as_dict
from src.data import mr_simulator
from src.data.classical import classical_rendering, fit_classical
from src.data.degrade import degrade, naive_upsample
from src.data.labels import CLASS_NAMES
from src.data.preprocess import BACKGROUND
from src.data.splits import SPLITS

Sets = dict[str, dict[str, np.ndarray]]  # split -> array name -> array
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
        for key, array in files.items():
            array.flush()
        del files
        for key in ("slice_index", "volume_index", "axis"):
            np.save(folder / split / f"{key}.npy", parts[split][key], allow_pickle=False)
        out[split] = {k: np.load(folder / split / f"{k}.npy", mmap_mode="r")
                      for k in ("hr", "lr", "naive", "slice_index", "volume_index", "axis")}
    return out


def sim2real_sets(parts: Sets, user_sim: Sets | None, data: DataConfig, rng: np.random.Generator) -> Sets:
    """train: sim from the train_sim slices' labels (deformed variants) and real from train_real;
    val/test: each slice's real image, labels and a sim image rendered from the same labels.
    With the user's own sim images (`user_sim`), those are the sim side of every split."""
    sim_cfg = data.sim
    out = {}
    for split in SPLITS:
        if user_sim is not None:
            real = parts[split]
            sim_images, sim_labels = user_sim[split]["images"], user_sim[split]["labels"]
        elif split == "train":
            real = parts["train_real"]
            base = np.repeat(parts["train_sim"]["labels"], sim_cfg.variants_per_slice, axis=0)
            sim_labels = mr_simulator.elastic_deform_labels(base, sim_cfg.elastic_magnitude, rng)
            sim_images = mr_simulator.simulate(sim_labels, sim_cfg, rng, data.percentiles)
        else:
            real = parts[split]
            sim_labels = real["labels"].copy()
            sim_images = mr_simulator.simulate(sim_labels, sim_cfg, rng, data.percentiles)
        out[split] = {"sim": sim_images.astype(np.float32), "sim_labels": sim_labels.astype(np.uint8),
                      "real": real["images"], "real_labels": real["labels"].astype(np.uint8),
                      "real_slice_index": real["slice_index"], "real_volume_index": real["volume_index"]}
    train = out["train"]
    matching = fit_classical(train["sim"], train["sim_labels"], train["real"], train["real_labels"],
                             data.classical_blur_sigma)
    for arrays in out.values():
        arrays["classical"] = classical_rendering(arrays["sim"], arrays["sim_labels"], matching,
                                                  data.classical_blur_sigma)
    return out


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


def describe(sets: Sets) -> dict:
    """Per split: the count and each array's shape, dtype and value range (for the manifest)."""
    return {split: {"count": _counts(arrays),
                    "arrays": {key: {"shape": list(a.shape), "dtype": str(a.dtype),
                                     "range": [float(a.min()), float(a.max())] if a.size else None}
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
