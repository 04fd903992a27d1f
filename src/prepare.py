"""DVC stage `prepare`: MRI volumes -> normalised 2-D slices, super-resolution pairs and sim-to-real sets.

Reads params `seed` and `data` (params.yaml; `--params` points elsewhere, for tests) and,
all paths relative to the working directory:

    data.source == "mni152":  data/raw/mni152/{t1,gm,wm}.nii.gz (stage `template`); the
        brain mask and the hard tissue labels come from the GM/WM probability maps.
    data.source == "folder":  data.folder laid out as
        <folder>/images/      volumes (NIfTI .nii/.nii.gz, DICOM .dcm files, or one folder per
                              DICOM series) or 2-D images (PNG/TIFF, 8- or 16-bit grey)
        <folder>/labels/      optional: one label map per image, matched by name without
                              extension; values 0 background, 1 CSF, 2 GM, 3 WM; the image
                              foreground is then labels > 0. Use the image's own format:
                              only the shape is checked, and NIfTI, DICOM and PNG differ in
                              orientation conventions (see src/data/io.py)
        <folder>/sim/         optional: your own simulated images, which replace the built-in
        <folder>/sim_labels/  simulator (needs labels/; sim_labels/ required), split like images/
        Without labels/ only the super-resolution outputs are written (the sim-to-real sets
        need labels): sim2real/ then holds only meta.json with "written": false and the
        reason; the manifest and the log say so too. Without labels the foreground is an
        Otsu mask (largest component, holes filled).

Writes (into temporary folders, renamed into place at the end: a failed run leaves no
partial output):

    data/prepared/sr/{train,val,test}.npz       hr (N,1,S,S), lr (N,1,S/k,S/k), naive (N,1,S,S) float32,
                                                slice_index, volume_index, axis (N,) int
    data/prepared/sr/meta.json                  scale, degradation, sizes, value range, counts
    data/prepared/sim2real/train.npz            sim (M,1,S,S), sim_labels (M,S,S) uint8,
                                                real (K,1,S,S), real_labels (K,S,S) uint8
    data/prepared/sim2real/{val,test}.npz       sim, sim_labels, real, real_labels: one row per slice,
                                                sim rendered from that slice's own labels (aligned)
    data/prepared/sim2real/meta.json            class names, counts, simulator parameters and intensities
    data/prepared/manifest.json                 counts, shapes, value ranges, input files with sha256,
                                                slice indices per split, resolved data params, wall time
    pipeline/prepare/preview.png                HR | LR | naive | sim | real | labels for a few test slices

Images are float32 in [-1, 1] with the background exactly -1 (S = data.image_size,
k = data.scale). Labels of real train slices are for evaluation judges only, never a loss.
Splits: see src/data/splits.py (contiguous slabs with gaps, or whole volumes when >= 3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.atomic import replace_dir, staging_dir
from src.checksum import sha256
from src.config import PARAMS_FILE, ConfigError, DataConfig, Params, as_dict, load_params
from src.data import mr_simulator
from src.data.degrade import degrade, naive_upsample
from src.data.io import (DataError, check_min_size, check_same_shape, find_inputs, input_stem, load_labels,
                         load_volume)
from src.data.labels import CLASS_NAMES, NUM_CLASSES, brain_mask_from_tissue, tissue_labels
from src.data.preprocess import (BACKGROUND, crop_square, foreground_mask, kept_slices, normalise_volume,
                                 resize_images, resize_labels, set_background, slices_along, square_box)
from src.data.splits import (MIN_VOLUMES_FOR_VOLUME_SPLIT, SPLITS, check_axes, slab_splits, subslabs,
                             volume_splits)

MNI_DIR = Path("data/raw/mni152")
OUT_DIR = Path("data/prepared")
PREVIEW_DIR = Path("pipeline/prepare")
PREVIEW_ROWS = 4
# Independent random streams (np.random.default_rng([seed, stream])); stream 0 is the split.
SIM_STREAM, NOISE_STREAM = 1, 2


@dataclass
class Volume:
    """One input volume after normalisation (image in [-1, 1], background -1)."""

    name: str
    image_path: Path
    label_source: str | None  # label file, or how the labels were made
    image: np.ndarray
    foreground: np.ndarray
    labels: np.ndarray | None


@dataclass
class Stack:
    """The kept slices of one volume along one axis, cropped and resized to (S, S)."""

    volume: int
    axis: int
    slice_index: np.ndarray
    images: np.ndarray
    labels: np.ndarray | None


# ---------------------------------------------------------------- reading


def _probability(vol: np.ndarray, path: Path) -> np.ndarray:
    """Tissue probability in [0, 1]; maps stored as 0..255 (the nilearn copies) are rescaled."""
    if vol.min() < 0 or vol.max() > 255:
        raise DataError(f"{path}: expected a probability map in [0, 1] or [0, 255], got [{vol.min():g}, {vol.max():g}]")
    return vol / 255.0 if vol.max() > 1.0 else vol


def read_mni152(data: DataConfig) -> tuple[list[Volume], list[Path]]:
    paths = {name: MNI_DIR / f"{name}.nii.gz" for name in ("t1", "gm", "wm")}
    for path in paths.values():
        if not path.exists():
            raise DataError(f"{path}: file not found (run `python -m src.template` first)")
    vols = {name: load_volume(path) for name, path in tqdm(paths.items(), desc="reading mni152", unit="file",
                                                             file=sys.stderr)}
    t1 = vols["t1"]
    check_min_size(paths["t1"], t1.shape, data.axes, data.image_size // data.scale)
    probs = {}
    for name in ("gm", "wm"):
        check_same_shape(paths["t1"], t1, paths[name], vols[name])
        probs[name] = _probability(vols[name], paths[name])
    mask = brain_mask_from_tissue(probs["gm"], probs["wm"])
    if not mask.any():
        raise DataError(f"{paths['gm']}: empty brain mask (gm + wm never exceeds the threshold)")
    labels = tissue_labels(probs["gm"], probs["wm"], mask)
    image = _normalise(t1, mask, data.percentiles, paths["t1"])
    source = f"argmax(csf, gm, wm) of {paths['gm']} and {paths['wm']} inside the derived brain mask"
    return [Volume("mni152", paths["t1"], source, image, mask, labels)], list(paths.values())


def _normalise(vol: np.ndarray, mask: np.ndarray, percentiles: list[float], path: Path) -> np.ndarray:
    try:
        return normalise_volume(vol, mask, percentiles)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None


def _match_labels(images: list[Path], label_dir: Path) -> list[Path]:
    labels = {input_stem(p): p for p in find_inputs(label_dir)}
    stems = {input_stem(p) for p in images}
    for stem, path in labels.items():
        if stem not in stems:
            raise DataError(f"{path}: label map without an image of the same name in {images[0].parent}")
    missing = [p for p in images if input_stem(p) not in labels]
    if missing:
        raise DataError(f"{missing[0]}: no label map named {input_stem(missing[0])}.* in {label_dir}")
    return [labels[input_stem(p)] for p in images]


def read_folder_volumes(image_dir: Path, label_dir: Path | None, data: DataConfig,
                        desc: str) -> tuple[list[Volume], list[Path]]:
    """Read, check and normalise every input of `image_dir` (with labels from `label_dir`)."""
    images = find_inputs(image_dir)
    labels = _match_labels(images, label_dir) if label_dir is not None else [None] * len(images)
    volumes, files = [], []
    for image_path, label_path in tqdm(list(zip(images, labels)), desc=desc, unit="vol", file=sys.stderr):
        vol = load_volume(image_path)
        check_min_size(image_path, vol.shape, data.axes, data.image_size // data.scale)
        if label_path is not None:
            lab = load_labels(label_path, NUM_CLASSES)
            check_same_shape(image_path, vol, label_path, lab)
            mask = lab > 0
            if not mask.any():
                raise DataError(f"{label_path}: label map is all background")
        else:
            lab, mask = None, foreground_mask(vol)
            if not mask.any():
                raise DataError(f"{image_path}: no foreground found (constant image?)")
        image = _normalise(vol, mask, data.percentiles, image_path)
        volumes.append(Volume(input_stem(image_path), image_path, str(label_path) if label_path else None,
                              image, mask, lab))
        files += [image_path] + ([label_path] if label_path is not None else [])
    return volumes, files


# ---------------------------------------------------------------- slicing


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


# ---------------------------------------------------------------- splits


def assign_splits(stacks: list[Stack], n_volumes: int, data: DataConfig, seed: int,
                  need_sim_real: bool) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Positions (into each stack) of train / val / test / train_sim / train_real, and the split manifest."""
    names = SPLITS + ("train_sim", "train_real")
    positions, entries = [], []
    if n_volumes >= MIN_VOLUMES_FOR_VOLUME_SPLIT:
        split = volume_splits(n_volumes, data.split_fractions, seed, data.sim_fraction)
        single_train = need_sim_real and not split.train_sim
        check_axes(n_volumes, data.axes, n_train_volumes=1 if single_train else None)
        summary = {"mode": "volume", "gap": data.split_gap, "volumes": {s: getattr(split, s) for s in names}}
        for stack in stacks:
            members = {s: stack.volume in getattr(split, s) for s in names}
            pos = {s: np.arange(len(stack.slice_index)) if members[s] else np.zeros(0, int) for s in names}
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
                   for s in names}
            summary["order_low_to_high"] = list(slabs.order)
            positions.append(pos)
    for stack, pos in zip(stacks, positions):
        entries.append({"volume": int(stack.volume), "axis": int(stack.axis),
                        **{s: stack.slice_index[pos[s]].tolist() for s in names}})
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


# ---------------------------------------------------------------- task sets


def sr_set(hr: np.ndarray, data: DataConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """hr (N, 1, S, S) -> hr, lr = degrade(hr) (+ Gaussian noise), naive = matching upsampling of lr."""
    hr_img = torch.from_numpy(hr)
    lr_img = degrade(hr_img, data.scale, data.degradation)
    if data.lr_noise_std > 0:
        lr_img = lr_img + torch.from_numpy(rng.normal(0.0, data.lr_noise_std, tuple(lr_img.shape)).astype(np.float32))
    naive = naive_upsample(lr_img, data.scale, data.degradation)
    return {"hr": hr, "lr": lr_img.numpy().astype(np.float32), "naive": naive.numpy().astype(np.float32)}


def sim2real_sets(parts: dict[str, dict], user_sim: dict[str, dict] | None, data: DataConfig,
                  rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
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
    return out


# ---------------------------------------------------------------- outputs


def _describe(arrays: dict[str, np.ndarray]) -> dict:
    return {key: {"shape": list(a.shape), "dtype": str(a.dtype),
                  "range": [float(a.min()), float(a.max())] if a.size else None}
            for key, a in arrays.items()}


def write_preview(path: Path, sr_test: dict[str, np.ndarray], s2r_test: dict[str, np.ndarray] | None,
                  data: DataConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = len(sr_test["hr"])
    rows = np.unique(np.linspace(0, n - 1, min(PREVIEW_ROWS, n)).round().astype(int)) if n else []
    columns = [("HR", "hr"), (f"LR (x{data.scale} {data.degradation})", "lr"), ("naive upsampling", "naive")]
    if s2r_test is not None:
        columns += [("sim (same labels)", "sim"), ("real", "real"), ("labels", "real_labels")]
    label_cmap = ListedColormap(["black", "tab:blue", "tab:orange", "white"])
    fig, axes = plt.subplots(max(len(rows), 1), len(columns), figsize=(2.2 * len(columns), 2.3 * max(len(rows), 1)),
                             squeeze=False)
    for r, i in enumerate(rows):
        for c, (title, key) in enumerate(columns):
            ax = axes[r, c]
            source = sr_test if key in sr_test else s2r_test
            img = source[key][i]
            if key.endswith("labels"):
                ax.imshow(img, cmap=label_cmap, vmin=0, vmax=NUM_CLASSES - 1, interpolation="nearest")
            else:
                ax.imshow(img[0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"test slice {int(sr_test['slice_index'][i])}", fontsize=8)
    if s2r_test is None:
        note = "no labels: sim-to-real sets not written"
    else:
        note = "labels: " + ", ".join(f"{k}={name}" for k, name in zip(("black", "blue", "orange", "white"), CLASS_NAMES))
    fig.suptitle(f"prepare: test split ({n} slices, {data.image_size} px, window [-1, 1]); {note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _save_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


# ---------------------------------------------------------------- stage


def prepare(params: Params) -> dict:
    """Run the stage; returns the manifest. Raises DataError / ConfigError; writes nothing on failure."""
    start = time.perf_counter()
    data = params.data
    user_sim_volumes: list[Volume] | None = None
    if data.source == "mni152":
        volumes, inputs = read_mni152(data)
    else:
        folder = Path(data.folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (data.folder)")
        label_dir = folder / "labels" if (folder / "labels").exists() else None
        volumes, inputs = read_folder_volumes(folder / "images", label_dir, data, "reading images")
        if (folder / "sim").exists():
            if label_dir is None:
                raise DataError(f"{folder / 'labels'}: folder not found (user sim images in {folder / 'sim'} "
                                "need label maps for the real images too)")
            if not (folder / "sim_labels").exists():
                raise DataError(f"{folder / 'sim_labels'}: folder not found (user sim images need their label maps)")
            user_sim_volumes, sim_inputs = read_folder_volumes(folder / "sim", folder / "sim_labels", data, "reading sim")
            inputs += sim_inputs
    has_labels = all(v.labels is not None for v in volumes)

    jobs = [(i, v, axis) for i, v in enumerate(volumes) for axis in data.axes]
    stacks = [make_stack(i, v, axis, data) for i, v, axis in tqdm(jobs, desc="slicing", unit="stack", file=sys.stderr)]
    positions, split_manifest = assign_splits(stacks, len(volumes), data, params.seed,
                                              need_sim_real=has_labels and user_sim_volumes is None)
    parts = {s: gather(stacks, positions, s) for s in SPLITS + ("train_sim", "train_real")}
    for split in SPLITS:
        if len(parts[split]["images"]) == 0:
            raise ConfigError(f"data.split_fractions: the {split} split is empty; add data or change "
                              "data.split_fractions / data.split_gap / data.min_foreground")

    noise_rng = np.random.default_rng([params.seed, NOISE_STREAM])
    sr = {s: {**sr_set(parts[s]["images"], data, noise_rng), "slice_index": parts[s]["slice_index"],
              "volume_index": parts[s]["volume_index"], "axis": parts[s]["axis"]} for s in SPLITS}

    s2r, s2r_skipped = None, None
    sim_split = None
    if not has_labels:
        s2r_skipped = "no label maps (data.folder has no labels/): sim-to-real sets need tissue labels"
    else:
        user_sim = None
        if user_sim_volumes is not None:
            sim_stacks = [make_stack(i, v, axis, data) for i, v in enumerate(user_sim_volumes) for axis in data.axes]
            sim_positions, sim_split = assign_splits(sim_stacks, len(user_sim_volumes), data, params.seed,
                                                     need_sim_real=False)
            user_sim = {s: gather(sim_stacks, sim_positions, s) for s in SPLITS}
            for split in SPLITS:
                if len(user_sim[split]["images"]) == 0:
                    raise ConfigError(f"data.split_fractions: the {split} split of {Path(data.folder) / 'sim'} "
                                      "is empty; add sim data or change the split params")
        else:
            for part in ("train_sim", "train_real"):
                if len(parts[part]["images"]) == 0:
                    raise ConfigError(f"data.sim_fraction: the {part} part of the train split is empty; "
                                      "add data or change data.sim_fraction / data.split_gap")
        s2r = sim2real_sets(parts, user_sim, data, np.random.default_rng([params.seed, SIM_STREAM]))

    intensities = mr_simulator.signal_intensities(data.sim.field_strength, data.sim.tr_ms, data.sim.te_ms)
    sr_meta = {
        "scale": data.scale, "degradation": data.degradation, "image_size": data.image_size,
        "lr_size": data.image_size // data.scale, "lr_noise_std": data.lr_noise_std,
        "value_range": [-1.0, 1.0], "background": BACKGROUND,
        "counts": {s: len(sr[s]["hr"]) for s in SPLITS},
        "note": "hr is in [-1, 1]; lr and naive are not clipped and can overshoot slightly (Gibbs ringing of "
                "k-space truncation), so naive stays the exact matching reconstruction of lr",
    }
    s2r_meta = None
    if s2r is not None:
        s2r_meta = {
            "written": True, "class_names": list(CLASS_NAMES), "value_range": [-1.0, 1.0], "background": BACKGROUND,
            "counts": {s: {"sim": len(s2r[s]["sim"]), "real": len(s2r[s]["real"])} for s in SPLITS},
            "sim_source": "user" if user_sim_volumes is not None else "simulator",
            "val_test_aligned": user_sim_volumes is None,
            "simulator": None if user_sim_volumes is not None else {
                **as_dict(data.sim),
                "tissue_parameters": {v["name"]: {k: x for k, x in v.items() if k != "name"}
                                      for v in mr_simulator.tissue_parameters(data.sim.field_strength).values()},
                "intensities": {CLASS_NAMES[k]: v for k, v in intensities.items()},
            },
            "note": "real_labels of the train split are for evaluation judges / oracles only, never a training loss",
        }

    out_tmp = staging_dir(OUT_DIR)
    preview_tmp = staging_dir(PREVIEW_DIR)
    try:
        (out_tmp / "sr").mkdir()
        for s in SPLITS:
            np.savez(out_tmp / "sr" / f"{s}.npz", **sr[s])
        _save_json(out_tmp / "sr" / "meta.json", sr_meta)
        (out_tmp / "sim2real").mkdir()
        if s2r is not None:
            for s in SPLITS:
                np.savez(out_tmp / "sim2real" / f"{s}.npz", **s2r[s])
            _save_json(out_tmp / "sim2real" / "meta.json", s2r_meta)
        else:
            # The folder still exists (it is a DVC out); its meta says why it holds no sets.
            _save_json(out_tmp / "sim2real" / "meta.json",
                       {"written": False, "reason": s2r_skipped, "class_names": list(CLASS_NAMES)})
        write_preview(preview_tmp / "preview.png", sr["test"], s2r["test"] if s2r else None, data)
        manifest = {
            "stage": "prepare",
            "source": data.source,
            "seed": params.seed,
            "data": as_dict(data),
            "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
            "volumes": [{"index": i, "name": v.name, "image": str(v.image_path),
                         "labels": v.label_source, "shape": list(v.image.shape)}
                        for i, v in enumerate(volumes)],
            "splits": split_manifest,
            "user_sim_splits": sim_split,
            "outputs": {
                "sr": {s: {"count": len(sr[s]["hr"]), "arrays": _describe(sr[s])} for s in SPLITS},
                "sim2real": ({s: {"count": {"sim": len(s2r[s]["sim"]), "real": len(s2r[s]["real"])},
                                  "arrays": _describe(s2r[s])} for s in SPLITS}
                             if s2r is not None else {"written": False, "reason": s2r_skipped}),
            },
            "wall_time_s": round(time.perf_counter() - start, 2),
        }
        _save_json(out_tmp / "manifest.json", manifest)
        replace_dir(out_tmp, OUT_DIR)
        replace_dir(preview_tmp, PREVIEW_DIR)
    finally:
        for tmp in (out_tmp, preview_tmp):
            if tmp.exists():
                shutil.rmtree(tmp)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.prepare",
        description="Reads params `seed` and `data` and the volumes of data.source (data/raw/mni152/ or "
                    "data.folder: images/, labels/, sim/, sim_labels/) and writes normalised 2-D slice sets: "
                    "data/prepared/sr/{train,val,test}.npz + meta.json (HR/LR/naive pairs), "
                    "data/prepared/sim2real/{train,val,test}.npz + meta.json (simulated and real slices with "
                    "labels), data/prepared/manifest.json and pipeline/prepare/preview.png. Paths are relative "
                    "to the working directory.")
    parser.add_argument("--params", default=str(PARAMS_FILE), help="params file (default: params.yaml; for tests)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        manifest = prepare(params)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sr_counts = {s: v["count"] for s, v in manifest["outputs"]["sr"].items()}
    print(f"prepare: {len(manifest['volumes'])} volume(s), {manifest['splits']['mode']} split, sr {sr_counts}")
    s2r = manifest["outputs"]["sim2real"]
    if "written" in s2r:
        print(f"prepare: sim2real NOT written: {s2r['reason']}")
    else:
        counts = {s: v["count"] for s, v in s2r.items()}
        print(f"prepare: sim2real {counts}")
    print(f"prepare: wrote {OUT_DIR}/ and {PREVIEW_DIR}/preview.png in {manifest['wall_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
