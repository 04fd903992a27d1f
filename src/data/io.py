"""Reading images for the prepare stage: MONAI readers in, float32 numpy arrays out, one error type.

Supported inputs (`find_inputs`, `load_volume`):

    *.nii, *.nii.gz        NIfTI volume (NibabelReader, reoriented to the closest canonical RAS)
    *.dcm                  one DICOM file (PydicomReader): a 2-D image or a multi-frame volume
    <folder>/ of DICOM     one DICOM series (PydicomReader; slices ordered by InstanceNumber)
    *.png, *.tif, *.tiff   one 2-D grey image, 8- or 16-bit (PILReader; colour is averaged to grey)

Array convention. Volumes are 3-D and x-first, as MONAI's readers return them (axis 0 runs
left-right across the screen, axis 1 top-to-bottom, axis 2 across slices); a 2-D image comes
back as (W, H, 1). NIfTI volumes are RAS after canonical reorientation, so axes 1 and 2 are
flipped to make them run top-to-bottom like image rows: an axial slice then shows anterior at
the top, a coronal or sagittal one superior at the top, and `data.axes` keeps its RAS meaning
(0 sagittal, 1 coronal, 2 axial). Intensities are not rescaled (DICOM rescale slope/intercept
are applied by the reader).

Every failure is a `DataError` whose message starts with the offending path, so a user can
find the file: unreadable/corrupt/truncated files, unsupported types, empty or missing
folders, non-finite voxels, label problems, shape mismatches, too-small images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from monai.data import NibabelReader, PILReader, PydicomReader

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm",)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
SUPPORTED = NIFTI_SUFFIXES + DICOM_SUFFIXES + IMAGE_SUFFIXES


class DataError(ValueError):
    """An input data problem; the message starts with the offending file or folder path."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in SUPPORTED:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def input_stem(path: Path) -> str:
    """The name used to match an image with its label map: the file name without its
    (possibly double, `.nii.gz`) extension; a DICOM series folder's own name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = _suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _series_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: empty folder (expected the DICOM files of one series)")
    for f in files:
        if f.is_dir():
            raise DataError(f"{f}: nested folder inside a DICOM series folder")
        if not pydicom.misc.is_dicom(str(f)):
            raise DataError(f"{f}: not a DICOM file (a folder inside the inputs is read as one DICOM series)")
    return files


def find_inputs(folder: Path | str) -> list[Path]:
    """The readable inputs in `folder`, sorted by name (deterministic).

    Files with a supported extension are single inputs; a sub-folder is one DICOM series.
    Hidden entries (dot-files such as .DS_Store) are ignored. Raises DataError for a
    missing folder, a folder without inputs, or a file of an unsupported type.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    inputs = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            _series_files(entry)
        elif _suffix(entry) not in SUPPORTED:
            raise DataError(f"{entry}: unsupported file type (supported: {', '.join(SUPPORTED)}, "
                            "or a folder holding one DICOM series)")
        inputs.append(entry)
    if not inputs:
        raise DataError(f"{folder}: no images found (supported: {', '.join(SUPPORTED)}, or DICOM series folders)")
    stems = [input_stem(p) for p in inputs]
    for stem in sorted(set(stems)):
        clash = [p for p, s in zip(inputs, stems) if s == stem]
        if len(clash) > 1:
            raise DataError(f"{clash[1]}: has the same name as {clash[0].name} (names must be unique without extension)")
    return inputs


def _grey(image):
    """PIL converter: colour and palette images to one grey channel; 8/16-bit grey kept as is."""
    if image.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        return image
    return image.convert("L")


def _read(path: Path) -> np.ndarray:
    if path.is_dir():
        _series_files(path)
        reader = PydicomReader()
        kind = "DICOM series"
    else:
        suffix = _suffix(path)
        if suffix in NIFTI_SUFFIXES:
            reader, kind = NibabelReader(as_closest_canonical=True), "NIfTI file"
        elif suffix in DICOM_SUFFIXES:
            reader, kind = PydicomReader(), "DICOM file"
        elif suffix in IMAGE_SUFFIXES:
            reader, kind = PILReader(converter=_grey), "image file"
        else:
            raise DataError(f"{path}: unsupported file type (supported: {', '.join(SUPPORTED)})")
        if not path.exists():
            raise DataError(f"{path}: file not found")
    try:
        array, _ = reader.get_data(reader.read(path))
        array = np.asarray(array, dtype=np.float32)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
        raise DataError(f"{path}: cannot read {kind} (corrupt, truncated or not this format): "
                        f"{type(err).__name__}: {err}") from None
    if isinstance(reader, NibabelReader):
        # RAS -> rows run top-to-bottom (see module docstring).
        array = np.ascontiguousarray(np.flip(array, axis=tuple(a for a in (1, 2) if a < array.ndim)))
    return array


def load_volume(path: Path | str) -> np.ndarray:
    """Read one input as a float32 3-D array (x-first; 2-D images as (W, H, 1)).

    Trailing singleton dimensions (a 4-D NIfTI with one frame) are dropped. Raises
    DataError (message starts with `path`) for unreadable files, other dimensionalities,
    empty arrays and NaN/Inf voxels.
    """
    path = Path(path)
    array = _read(path)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 2-D image or a 3-D volume, got shape {array.shape}")
    if array.size == 0:
        raise DataError(f"{path}: empty image (shape {array.shape})")
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} of {array.size} voxels are NaN or Inf")
    return array


def load_labels(path: Path | str, num_classes: int) -> np.ndarray:
    """Read a label map as uint8 (same layout as `load_volume`); values must be the
    integers 0 .. num_classes - 1."""
    path = Path(path)
    array = load_volume(path)
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise DataError(f"{path}: label map holds non-integer values")
    values = np.unique(rounded)
    if values.min() < 0 or values.max() >= num_classes:
        raise DataError(f"{path}: label values must be integers 0..{num_classes - 1}, found {values.tolist()[:10]}")
    return rounded.astype(np.uint8)


def check_same_shape(image_path: Path, image: np.ndarray, other_path: Path, other: np.ndarray) -> None:
    """DataError naming `other_path` when a label map (or tissue map) does not match its image."""
    if image.shape != other.shape:
        raise DataError(f"{other_path}: shape {other.shape} does not match {image_path} {image.shape}")


def check_min_size(path: Path, shape: tuple[int, ...], axes: list[int], min_size: int) -> None:
    """DataError when a slice along any of `axes` is smaller than `min_size` (= image_size / scale):
    the HR image would then be an upsampled copy carrying less detail than its own LR input."""
    for axis in axes:
        in_plane = [n for a, n in enumerate(shape) if a != axis]
        if min(in_plane) < min_size:
            raise DataError(f"{path}: slices along axis {axis} are {in_plane[1]}x{in_plane[0]} pixels, smaller than "
                            f"data.image_size / data.scale = {min_size}")
