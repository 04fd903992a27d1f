"""Reading the prepare stage's input volumes: checked, with a foreground mask and labels, normalised to [-1, 1].

Two sources. The MNI152 template (`read_mni152`): {t1,gm,wm}.nii.gz as written by the
`template` stage; the brain mask and the hard tissue labels come from the GM/WM
probability maps. A user folder (`read_folder`), laid out as

    <folder>/images/      volumes (NIfTI .nii/.nii.gz, DICOM .dcm files, or one folder per
                          DICOM series) or 2-D images (PNG/TIFF, 8- or 16-bit grey)
    <folder>/labels/      optional: one label map per image, matched by name without
                          extension; values 0 background, 1 CSF, 2 GM, 3 WM; the image
                          foreground is then labels > 0. Use the image's own format: only
                          the shape is checked, and NIfTI, DICOM and PNG differ in
                          orientation conventions (see src/data/io.py)
    <folder>/sim/         optional: your own simulated images, which replace the built-in
    <folder>/sim_labels/  simulator (needs labels/; sim_labels/ required)

Without labels the foreground is an Otsu mask (largest component, holes filled). Each volume
keeps what its reader found (`ReadInfo`: voxel spacing, orientation, complex voxels; src/data/io.py)
for the slicing (src/data/stacks.py), the warnings (`report_reading`) and the manifest
(`geometry_record`). Every failure is a `DataError` whose message starts with the offending path.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.config import DataConfig
from src.data.io import (DataError, ReadInfo, check_min_size, check_same_grid, check_same_shape, find_inputs,
                         input_stem, read_input, read_labels)
from src.data.labels import NUM_CLASSES, brain_mask_from_tissue, tissue_labels
from src.data.preprocess import foreground_mask, normalise_volume, slice_geometry, square_pixel_shape

MNI152_FILES = ("t1", "gm", "wm")
ANISOTROPY_WARNING = 3.0  # in-plane pixel aspect ratio from which a slicing axis is worth a warning
log = logging.getLogger(__name__)


@dataclass
class Volume:
    """One input volume after normalisation (image in [-1, 1], background -1)."""

    name: str
    image_path: Path
    label_source: str | None  # label file, or how the labels were made
    image: np.ndarray
    foreground: np.ndarray
    labels: np.ndarray | None
    note: str | None = None   # how the volume was restricted before slicing (manifest: splits.notes)
    read: ReadInfo = field(default_factory=ReadInfo)  # spacing and orientation as read (src/data/io.py)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape


@dataclass(frozen=True)
class VolumeInfo:
    """What is kept of a volume once it is sliced (parallel prepare): no voxels."""

    name: str
    image_path: Path
    label_source: str | None
    shape: tuple[int, ...]
    note: str | None = None
    read: ReadInfo = field(default_factory=ReadInfo)

    @classmethod
    def of(cls, vol: Volume) -> VolumeInfo:
        return cls(vol.name, vol.image_path, vol.label_source, tuple(vol.image.shape), vol.note, vol.read)


def geometry_record(vol: Volume | VolumeInfo, axes: list[int]) -> dict:
    """manifest.json's account of a volume's geometry: voxel spacing (mm, per array axis, null where the
    file does not say) and orientation as read, whether complex voxels became their magnitude, and per
    slicing axis the slices' pixel spacing (rows, cols) and whether they were resampled to square pixels
    (src/data/stacks.py `make_stack`; shapes before and after, rows x cols)."""
    read, slicing = vol.read, []
    for axis in axes:
        shape, spacing = slice_geometry(vol.shape, read.spacing_mm, axis)
        square = square_pixel_shape(shape, spacing)
        slicing.append({"axis": axis, "pixel_mm": list(spacing), "resampled": square != shape,
                        "pixels": list(shape), "resampled_pixels": list(square)})
    return {"spacing_mm": list(read.spacing_mm), "spacing_source": read.spacing_source,
            "orientation": read.orientation, "array_orientation": read.array_orientation,
            "complex_magnitude": read.magnitude, "slices": slicing}


def _pixel_aspect(vol: Volume | VolumeInfo, axis: int) -> float | None:
    """Long side / short side of the pixels of the slices along `axis`; None when a spacing is unknown."""
    _, (row_mm, col_mm) = slice_geometry(vol.shape, vol.read.spacing_mm, axis)
    return None if row_mm is None or col_mm is None else max(row_mm, col_mm) / min(row_mm, col_mm)


def report_reading(vol: Volume | VolumeInfo, axes: list[int]) -> None:
    """Log what reading changed or cannot make up for: complex voxels taken as their magnitude, and slicing
    axes whose pixels are over ANISOTROPY_WARNING times longer one way (resampled, but the detail along that
    way was never measured). manifest.json records both (volumes.geometry)."""
    if vol.read.magnitude:
        log.warning("%s: complex-valued voxels: their magnitude is used (manifest.json: volumes.geometry)",
                    vol.image_path)
    spacing = vol.read.spacing_mm
    for axis in axes:
        aspect = _pixel_aspect(vol, axis)
        if aspect is None or aspect <= ANISOTROPY_WARNING:
            continue
        _, (row_mm, col_mm) = slice_geometry(vol.shape, spacing, axis)
        acquired = [a for a in range(3) if (_pixel_aspect(vol, a) or np.inf) <= ANISOTROPY_WARNING]
        hint = f"; slices along axis {acquired[0]} (the acquired plane) keep the detail" if acquired else ""
        log.warning("%s: %s mm voxels: slices along axis %d have %g x %g mm pixels (rows x cols) and are resampled "
                    "to square pixels by interpolating %.1fx along one direction, which adds no detail%s",
                    vol.image_path, " x ".join("?" if mm is None else f"{mm:g}" for mm in spacing), axis, row_mm,
                    col_mm, aspect, hint)


def _probability(vol: np.ndarray, path: Path) -> np.ndarray:
    """Tissue probability in [0, 1]; maps stored as 0..255 (the nilearn copies) are rescaled."""
    if vol.min() < 0 or vol.max() > 255:
        raise DataError(f"{path}: expected a probability map in [0, 1] or [0, 255], got [{vol.min():g}, {vol.max():g}]")
    return vol / 255.0 if vol.max() > 1.0 else vol


def _normalise(vol: np.ndarray, mask: np.ndarray, percentiles: list[float], path: Path) -> np.ndarray:
    try:
        return normalise_volume(vol, mask, percentiles)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None


def read_mni152(folder: Path, data: DataConfig) -> tuple[list[Volume], list[Path]]:
    """The template in `folder` as one labelled volume; returns it and the files read."""
    paths = {name: folder / f"{name}.nii.gz" for name in MNI152_FILES}
    for path in paths.values():
        if not path.exists():
            raise DataError(f"{path}: file not found (run `python -m src.template` first)")
    reads = {name: read_input(path, data.max_volume_mib)
             for name, path in tqdm(paths.items(), desc="reading mni152", unit="file", file=sys.stderr)}
    vols = {name: array for name, (array, _) in reads.items()}
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
    note = None
    if tuple(data.axes) == (0,) and all(np.array_equal(v, v[::-1]) for v in vols.values()):
        # The 2009a *symmetric* template: sagittal slice x is slice -x exactly, so slabs cut along axis 0
        # would put each val slice's twin in test (and train). Slice one hemisphere, midline included.
        mid = t1.shape[0] // 2
        mask = mask.copy()
        mask[:mid] = False
        note = (f"hemisphere: {paths['t1']} is left-right symmetric, so with data.axes [0] only sagittal slices "
                f"{mid}..{t1.shape[0] - 1} (midline and right hemisphere) are used: the others are their mirror twins")
    return [Volume("mni152", paths["t1"], source, image, mask, labels, note, reads["t1"][1])], list(paths.values())


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


def read_volume(image_path: Path, label_path: Path | None, data: DataConfig) -> Volume:
    """Read, check and normalise one input (with its label map when `label_path` is given)."""
    vol, read = read_input(image_path, data.max_volume_mib)
    check_min_size(image_path, vol.shape, data.axes, data.image_size // data.scale)
    if label_path is not None:
        lab, label_read = read_labels(label_path, NUM_CLASSES, data.max_volume_mib)
        check_same_shape(image_path, vol, label_path, lab)
        check_same_grid(image_path, read, label_path, label_read)
        mask = lab > 0
        if not mask.any():
            raise DataError(f"{label_path}: label map is all background")
    else:
        lab, mask = None, foreground_mask(vol)
        if not mask.any():
            raise DataError(f"{image_path}: no foreground found (constant image?)")
    image = _normalise(vol, mask, data.percentiles, image_path)
    return Volume(input_stem(image_path), image_path, str(label_path) if label_path else None, image, mask, lab,
                  read=read)


def folder_pairs(image_dir: Path, label_dir: Path | None) -> list[tuple[Path, Path | None]]:
    """(image, label map or None) for every input of `image_dir`, label maps matched by name."""
    images = find_inputs(image_dir)
    labels = _match_labels(images, label_dir) if label_dir is not None else [None] * len(images)
    return list(zip(images, labels))


def read_folder_volumes(image_dir: Path, label_dir: Path | None, data: DataConfig,
                        desc: str) -> tuple[list[Volume], list[Path]]:
    """Read, check and normalise every input of `image_dir` (with labels from `label_dir`)."""
    volumes, files = [], []
    for image_path, label_path in tqdm(folder_pairs(image_dir, label_dir), desc=desc, unit="vol", file=sys.stderr):
        volumes.append(read_volume(image_path, label_path, data))
        files += [image_path] + ([label_path] if label_path is not None else [])
    return volumes, files


def folder_layout(folder: Path) -> tuple[list[tuple[Path, Path | None]], list[tuple[Path, Path]] | None]:
    """The inputs of a user folder (layout in the module docstring), unread: (image, label map or
    None) pairs, and the user's (sim image, sim label map) pairs or None."""
    label_dir = folder / "labels" if (folder / "labels").exists() else None
    pairs = folder_pairs(folder / "images", label_dir)
    if not (folder / "sim").exists():
        return pairs, None
    if label_dir is None:
        raise DataError(f"{folder / 'labels'}: folder not found (user sim images in {folder / 'sim'} "
                        "need label maps for the real images too)")
    if not (folder / "sim_labels").exists():
        raise DataError(f"{folder / 'sim_labels'}: folder not found (user sim images need their label maps)")
    return pairs, folder_pairs(folder / "sim", folder / "sim_labels")


def read_folder(folder: Path, data: DataConfig) -> tuple[list[Volume], list[Volume] | None, list[Path]]:
    """The volumes of a user folder (layout in the module docstring): (images, the user's sim
    images or None, every file read). Holds every volume in RAM: prepare slices them in
    parallel instead (src/data/stacks.py `slice_inputs`)."""
    pairs, sim_pairs = folder_layout(folder)
    volumes = [read_volume(i, lab, data) for i, lab in tqdm(pairs, desc="reading images", unit="vol", file=sys.stderr)]
    inputs = [p for pair in pairs for p in pair if p is not None]
    if sim_pairs is None:
        return volumes, None, inputs
    sim_volumes = [read_volume(i, lab, data) for i, lab in tqdm(sim_pairs, desc="reading sim", unit="vol",
                                                                  file=sys.stderr)]
    return volumes, sim_volumes, inputs + [p for pair in sim_pairs for p in pair]
