"""Reading images for the prepare stage: MONAI readers in, float32 numpy arrays out, one error type.

Supported inputs (`find_inputs`, `load_volume`):

    *.nii, *.nii.gz        NIfTI volume (NibabelReader, reoriented to the closest canonical RAS)
    *.dcm                  one DICOM file: a 2-D image (PydicomReader) or a multi-frame volume, its frames
                           ordered and its geometry read from the functional groups (`read_multiframe`)
    <folder>/ of DICOM     one DICOM series, all or nothing (`read_series`): every file a DICOM image of
                           one SeriesInstanceUID, ordered by InstanceNumber (or by position along the
                           slice normal when no file has one); a file that breaks this is named
    *.png, *.tif, *.tiff   one 2-D grey image, 8- or 16-bit (PILReader; colour is averaged to grey)

Array convention. Volumes are 3-D and x-first, as MONAI's readers return them (axis 0 runs
left-right across the screen, axis 1 top-to-bottom, axis 2 across slices); a 2-D image comes
back as (W, H, 1). NIfTI volumes are RAS after canonical reorientation, so axes 1 and 2 are
flipped to make them run top-to-bottom like image rows: an axial slice then shows anterior at
the top, a coronal or sagittal one superior at the top, and `data.axes` keeps its RAS meaning
(0 sagittal, 1 coronal, 2 axial). Intensities are not rescaled (DICOM rescale slope/intercept
are applied by the reader); complex voxels become their magnitude (`_as_float32`).

Geometry is read, not assumed: `read_input` returns with the voxels a `ReadInfo` holding the
voxel spacing in mm along the array's axes (NIfTI: the reoriented affine; DICOM: PixelSpacing
and the slice positions) and the orientation codes (nibabel.aff2axcodes) of the file and of the
array; prepare makes slices with non-square pixels square from it (src/data/stacks.py). A DICOM
series whose files differ in ImageOrientationPatient or PixelSpacing (a multi-plane localizer
under one SeriesInstanceUID) is refused: no single volume holds it.

Every failure is a `DataError` whose message starts with the offending path, so a user can
find the file: unreadable/corrupt/truncated files, unsupported types, empty or missing
folders, non-finite voxels, finite voxels beyond float32's range, label problems, shape
mismatches, too-small images. A NIfTI
header is checked against the file's size and against a memory limit before any voxel is
read (`check_nifti`): a 100-byte file declaring an 8 GiB volume is refused, not allocated.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from monai.data import NibabelReader, PILReader, PydicomReader
from nibabel.affines import voxel_sizes
from pydicom.pixels import apply_rescale

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm",)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
SUPPORTED = NIFTI_SUFFIXES + DICOM_SUFFIXES + IMAGE_SUFFIXES
FLOAT32_MAX = float(np.finfo(np.float32).max)
XYZ_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}  # NIfTI xyzt_units; "unknown" is read as mm
DICOM_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's patient axes are LPS, nibabel's codes RAS


class DataError(ValueError):
    """An input data problem; the message starts with the offending file or folder path."""


@dataclass(frozen=True)
class ReadInfo:
    """What a reader found about an input besides its voxels.

    spacing_mm: voxel size in mm along the loaded array's axes 0, 1, 2; None where the file does
        not say (a PNG, a DICOM slice without SliceThickness, a zero pixdim).
    orientation: direction codes (nibabel.aff2axcodes: the positive end of each axis, R/L, A/P,
        S/I) of the file's own voxel axes; array_orientation: the same for the array as loaded
        (NIfTI: RPI, see the array convention above; DICOM: as the file).
    spacing_source: where the spacing was read. magnitude: the voxels were complex and their
        magnitude was taken.
    """

    spacing_mm: tuple[float | None, float | None, float | None] = (None, None, None)
    orientation: str | None = None
    array_orientation: str | None = None
    spacing_source: str = "not read"
    magnitude: bool = False


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


def check_nifti(path: Path, max_mib: float | None = None) -> None:
    """Read only the header of a NIfTI file; DataError when its volume (as float32) exceeds `max_mib`
    (data.max_volume_mib) or when the file holds fewer bytes than the header declares."""
    try:
        header = nib.load(path).header  # the voxel data stays on disk
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
    except Exception as err:  # noqa: BLE001 - any header failure means an unreadable file
        raise DataError(f"{path}: cannot read NIfTI file (corrupt, truncated or not this format): "
                        f"{type(err).__name__}: {err}") from None
    voxels = int(np.prod(shape, dtype=np.float64))
    if max_mib is not None and voxels * 4 > max_mib * 2 ** 20:
        size = voxels * 4 / 2 ** 20
        raise DataError(f"{path}: its header declares a {'x'.join(map(str, shape))} volume, {size:,.1f} MiB as "
                        f"float32, over data.max_volume_mib = {max_mib:g}; raise that limit if the volume is real, else "
                        "the header is corrupt")
    needed = offset + voxels * dtype.itemsize
    if _suffix(path) == ".nii":
        held = path.stat().st_size
    else:  # count the decompressed bytes without keeping them, stopping at what the header needs
        held = 0
        try:
            with gzip.open(path, "rb") as f:
                while held < needed and (chunk := f.read(min(1 << 22, needed - held))):
                    held += len(chunk)
        except (OSError, EOFError, zlib.error):
            pass  # cut inside the gzip stream: `held` is what could be read
    if held < needed:
        raise DataError(f"{path}: truncated: holds {held:,} bytes of NIfTI data, but its header declares a "
                        f"{'x'.join(map(str, shape))} volume of {dtype} needing {needed:,}")


def _as_float32(array: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """The voxels as float32, and whether they were complex (their magnitude is then taken, in float64).

    A cast would keep a complex voxel's real part, which depends on the reconstruction's arbitrary
    phase: the image is the magnitude. A finite value beyond float32's range is refused, not rescaled:
    no MR intensity is that large, so it means a corrupt file or intensity scaling (NIfTI scl_slope,
    DICOM RescaleSlope). Rescaling would hide that and would not rescue the volume: the Otsu mask and
    the percentile window are taken from the values as read, and a few 1e300 voxels make both
    meaningless (or squeeze every real intensity to 0 in float32).
    """
    magnitude = bool(np.iscomplexobj(array))
    if magnitude:
        array = np.abs(array, dtype=np.float64)  # float64: complex64 near float32's max has a larger magnitude
    if array.dtype.kind == "f" and array.dtype.itemsize > 4:
        beyond = np.isfinite(array) & (np.abs(array) > FLOAT32_MAX)
        if beyond.any():
            raise DataError(f"{path}: {int(beyond.sum())} of {array.size} voxels hold finite values beyond float32's "
                            f"range (largest magnitude {float(np.abs(array[beyond]).max()):.3g}, float32 holds up to "
                            f"{FLOAT32_MAX:.3g}): no MR intensity is that large; the file or its intensity scaling "
                            "(NIfTI scl_slope, DICOM RescaleSlope) is corrupt")
    return np.asarray(array, dtype=np.float32), magnitude


def _spacings(values) -> tuple[float | None, ...]:
    """Spacings in mm (to 1e-6 mm), None for a missing, zero, negative or non-finite one: the file does not say."""
    return tuple(round(float(v), 6) if v is not None and np.isfinite(v) and v > 0 else None for v in values)


def _axcodes(affine: np.ndarray) -> str:
    """nibabel.aff2axcodes as one string; `?` for an axis without a direction (a degenerate affine)."""
    return "".join(code or "?" for code in nib.aff2axcodes(affine))


def _nifti_info(image, meta: dict, flips: tuple[int, ...]) -> ReadInfo:
    """Spacing along the reoriented (closest canonical RAS) array's axes, from its affine, in mm by the header's
    xyz unit; direction codes of the file's affine and of the array once its `flips` axes are flipped."""
    unit = XYZ_UNIT_MM.get(image.header.get_xyzt_units()[0], 1.0)
    flip = np.diag([-1.0 if axis in flips else 1.0 for axis in range(3)] + [1.0])
    return ReadInfo(spacing_mm=_spacings(voxel_sizes(meta["affine"]) * unit),
                    orientation=_axcodes(meta["original_affine"]), array_orientation=_axcodes(meta["affine"] @ flip),
                    spacing_source="NIfTI header (affine)")


def _tag_values(ds, tag: str, path: Path) -> list[float] | None:
    """The numbers of a DICOM tag (ImageOrientationPatient, PixelSpacing); None when the file has none."""
    value = ds.get(tag)
    if value is None:
        return None
    try:
        return [float(v) for v in np.atleast_1d(np.asarray(value, dtype=object))]
    except (TypeError, ValueError):
        raise DataError(f"{path}: {tag} {value!r} is not a list of numbers") from None


def _dicom_info(ds, path: Path, slice_mm: float | None, slice_sign: float, source: str) -> ReadInfo:
    """The geometry of a (cols, rows, slices) array of DICOM pixels from a file's PixelSpacing and
    ImageOrientationPatient (`_geometry`)."""
    return _geometry(_tag_values(ds, "PixelSpacing", path), _tag_values(ds, "ImageOrientationPatient", path),
                     slice_mm, slice_sign, source)


def _geometry(spacing: list[float] | None, orientation: list[float] | None, slice_mm: float | None,
              slice_sign: float, source: str) -> ReadInfo:
    """The geometry of a (cols, rows, slices) array of DICOM pixels: spacing PixelSpacing[1] (between columns),
    PixelSpacing[0] (between rows) and `slice_mm`; codes from ImageOrientationPatient, the slice axis running
    along its normal times `slice_sign`."""
    col_mm, row_mm = (spacing[1], spacing[0]) if spacing is not None and len(spacing) == 2 else (None, None)
    codes = None
    if orientation is not None and len(orientation) == 6:
        along_row, along_col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        lps = np.eye(4)
        lps[:3, :3] = np.column_stack([along_row, along_col, slice_sign * np.cross(along_row, along_col)])
        codes = _axcodes(DICOM_LPS_TO_RAS @ lps)
    return ReadInfo(spacing_mm=_spacings((col_mm, row_mm, slice_mm)), orientation=codes, array_orientation=codes,
                    spacing_source=source if col_mm is not None else "none: the DICOM file has no PixelSpacing")


def _stated_slice_spacing(ds) -> tuple[float | None, str]:
    """A DICOM file's own slice spacing: SpacingBetweenSlices, else SliceThickness (blind to gaps), else unknown."""
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        if ds.get(tag) is not None:
            return float(ds.get(tag)), f"DICOM PixelSpacing and {tag}"
    return None, "DICOM PixelSpacing (slice spacing unknown)"


def _position(ds) -> float:
    """A slice's position along its normal (mm), from ImageOrientationPatient and ImagePositionPatient."""
    row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
    return float(np.dot(np.cross(row, col), np.asarray(ds.ImagePositionPatient, float)))


def _placed(ds) -> bool:
    return "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds


def _series_info(slices: list) -> ReadInfo:
    """The geometry of a sorted series of (file, dataset): the slice spacing is the median step between
    neighbouring slices' positions, else what the first file states."""
    first_file, first = slices[0]
    if len(slices) > 1 and all(_placed(ds) for _, ds in slices):
        step = float(np.median(np.diff([_position(ds) for _, ds in slices])))
        if step != 0:
            return _dicom_info(first, first_file, abs(step), float(np.sign(step)),
                               "DICOM PixelSpacing and ImagePositionPatient")
    slice_mm, source = _stated_slice_spacing(first)
    return _dicom_info(first, first_file, slice_mm, 1.0, source)


def _plane(orientation: list[float]) -> str:
    """The plane an ImageOrientationPatient is closest to, by the largest component of its normal."""
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    return ("sagittal", "coronal", "axial")[int(np.argmax(normal))]


def _show(values: list[float] | None, tag: str) -> str:
    if values is None:
        return "(absent)"
    text = "[" + ", ".join(f"{v:g}" for v in values) + "]"
    return f"{text} ({_plane(values)})" if tag == "ImageOrientationPatient" and len(values) == 6 else text


def _check_same_geometry(folder: Path, first_file: Path, first, f: Path, ds) -> None:
    """DataError naming `f` when its plane or pixel spacing differs from the series' first file's: one
    SeriesInstanceUID can hold several planes (a 3-plane localizer), and no single volume can."""
    for tag in ("ImageOrientationPatient", "PixelSpacing"):
        mine, theirs = _tag_values(ds, tag, f), _tag_values(first, tag, first_file)
        if mine is None and theirs is None:
            continue
        if mine is None or theirs is None or len(mine) != len(theirs) or \
                not np.allclose(mine, theirs, rtol=1e-4, atol=1e-4):
            raise DataError(f"{f}: {tag} {_show(mine, tag)} differs from {first_file.name}'s {_show(theirs, tag)} "
                            f"in one series (folder {folder}): its files do not stack into one volume (a multi-plane "
                            "localizer?); give each plane and pixel size a series folder of its own")


def read_series(folder: Path) -> tuple[np.ndarray, ReadInfo]:
    """One DICOM series folder as a float32 array (cols, rows, slices), rescale slope/intercept applied, and
    its geometry (`_series_info`).

    All or nothing: DataError naming the file when a file is not a DICOM image, belongs to
    another SeriesInstanceUID, differs in ImageOrientationPatient or PixelSpacing, has neither
    an InstanceNumber nor a position (or repeats another file's), or differs in size. A series
    is never read one slice short.
    """
    files = _series_files(folder)
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
            raise DataError(f"{f}: cannot read DICOM file (corrupt, truncated or not this format): "
                            f"{type(err).__name__}: {err}") from None
        if "PixelData" not in ds:
            raise DataError(f"{f}: no pixel data (a DICOM file that is not an image) in the series folder {folder}")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{f}: a multi-frame file inside a series folder; give it on its own, outside a folder")
        slices.append((f, ds))
    first_file, first = slices[0]
    series = first.get("SeriesInstanceUID")
    for f, ds in slices:
        if ds.get("SeriesInstanceUID") != series or series is None:
            raise DataError(f"{f}: SeriesInstanceUID {ds.get('SeriesInstanceUID')} differs from {first_file.name}'s "
                            f"{series}: a series folder holds the files of one series; put each series in its own "
                            "folder")
        _check_same_geometry(folder, first_file, first, f, ds)
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise DataError(f"{f}: {ds.Rows}x{ds.Columns} pixels, but {first_file.name} has "
                            f"{first.Rows}x{first.Columns}: not one series")
    slices = sorted(slices, key=_slice_order_key(slices))
    planes = []
    for f, ds in slices:
        try:
            pixels = apply_rescale(ds.pixel_array, ds)
        except Exception as err:  # noqa: BLE001 - undecodable pixel data
            raise DataError(f"{folder}: cannot decode the pixel data of its DICOM files: {type(err).__name__}: "
                            f"{err}") from None
        planes.append(_as_float32(pixels, f)[0].T)
    return np.stack(planes, axis=-1), _series_info(slices)


def _slice_order_key(slices: list):
    """Sort key placing each (file, dataset) in the series: InstanceNumber when every file has one, else the
    position along the slice normal when every file has a position and orientation. DataError otherwise, or
    when two files share a place."""
    if all(ds.get("InstanceNumber") is not None for _, ds in slices):
        key, name = (lambda item: int(item[1].InstanceNumber)), "InstanceNumber"
    elif all(_placed(ds) for _, ds in slices):
        key, name = (lambda item: _position(item[1])), "position along the slice normal"
    else:
        unnumbered = [f for f, ds in slices if ds.get("InstanceNumber") is None]
        f = ([f for f, ds in slices if ds.get("InstanceNumber") is None and not _placed(ds)] or unnumbered)[0]
        raise DataError(f"{f}: has no InstanceNumber (nor ImagePositionPatient with ImageOrientationPatient), so "
                        "its place in the series is unknown; every file of a series needs one")
    seen: dict = {}
    for f, ds in slices:
        place = key((f, ds))
        if place in seen:
            raise DataError(f"{f}: has the same {name} ({place:g}) as {seen[place].name}: a slice exported twice?")
        seen[place] = f
    return key


def _grey(image):
    """PIL converter: colour and palette images to one grey channel; 8/16-bit grey kept as is."""
    if image.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        return image
    return image.convert("L")


def _dicom_file_info(ds, path: Path) -> ReadInfo:
    """The geometry of one single-frame DICOM file (a 2-D image) from its tags."""
    slice_mm, source = _stated_slice_spacing(ds)
    return _dicom_info(ds, path, slice_mm, 1.0, source)


def _frames(ds) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _functional(ds, frame, sequence: str, tag: str, path: Path) -> list[float] | None:
    """A tag of an enhanced (multi-frame) DICOM file for one frame: the frame's own functional group, else the
    shared one, else the top level (legacy multi-frame files)."""
    for group in (frame, *(ds.get("SharedFunctionalGroupsSequence") or [])[:1]):
        if group is not None and group.get(sequence):
            values = _tag_values(group.get(sequence)[0], tag, path)
            if values is not None:
                return values
    return _tag_values(ds, tag, path)


def _read_dicom(path: Path):
    """A DICOM file's dataset, its pixel data read only when used; DataError naming an unreadable file."""
    try:
        return pydicom.dcmread(path, defer_size="1 MB")
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
        raise DataError(f"{path}: cannot read DICOM file (corrupt, truncated or not this format): "
                        f"{type(err).__name__}: {err}") from None


def _check_declared_size(path: Path, ds, max_mib: float | None) -> None:
    """DataError when a multi-frame file's declared frames (as float32) exceed data.max_volume_mib, before any
    pixel is decoded (as `check_nifti` does for a NIfTI header)."""
    voxels = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * _frames(ds)
    if max_mib is not None and voxels * 4 > max_mib * 2 ** 20:
        raise DataError(f"{path}: declares {_frames(ds)} frames of {ds.get('Rows')}x{ds.get('Columns')} pixels, "
                        f"{voxels * 4 / 2 ** 20:.0f} MiB as float32, over data.max_volume_mib = {max_mib:g}; raise "
                        "that limit if the volume is real, else the file is corrupt")


def read_multiframe(path: Path, ds) -> tuple[np.ndarray, ReadInfo]:
    """One enhanced (multi-frame) DICOM file as a float32 (cols, rows, frames) array, frames in order along
    their normal, and its geometry read from the functional groups, as `read_series` reads a series.

    Written by hand: MONAI's PydicomReader returns the frames as stored, in (rows, frames, cols), and no
    geometry for them. Per frame, PixelMeasuresSequence (PixelSpacing, SliceThickness, SpacingBetweenSlices),
    PlaneOrientationSequence and PlanePositionSequence are read from the frame's group, else the shared one.
    DataError naming the file and the frame when frames differ in orientation or pixel spacing (no single
    volume holds them) or share a position.
    """
    n = _frames(ds)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    frames = per_frame if len(per_frame) == n else [None] * n
    orientations = [_functional(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient", path) for f in frames]
    spacings = [_functional(ds, f, "PixelMeasuresSequence", "PixelSpacing", path) for f in frames]
    for tag, values in (("ImageOrientationPatient", orientations), ("PixelSpacing", spacings)):
        for k, value in enumerate(values):
            if (value is None) != (values[0] is None) or (
                    value is not None and (len(value) != len(values[0]) or
                                           not np.allclose(value, values[0], rtol=1e-4, atol=1e-4))):
                raise DataError(f"{path}: frame {k + 1} has {tag} {_show(value, tag)}, frame 1 "
                                f"{_show(values[0], tag)}: the frames of this multi-frame file do not stack into "
                                "one volume (a multi-plane localizer?); export each plane and pixel size on its own")
    positions = [_functional(ds, f, "PlanePositionSequence", "ImagePositionPatient", path) for f in frames]
    orientation = orientations[0]
    order, slice_mm, sign = list(range(n)), None, 1.0
    if orientation is not None and len(orientation) == 6 and all(p is not None and len(p) == 3 for p in positions):
        normal = np.cross(orientation[:3], orientation[3:])
        along = [float(np.dot(normal, p)) for p in positions]
        order = sorted(range(n), key=lambda k: along[k])
        steps = np.diff([along[k] for k in order])
        if (steps == 0).any():
            k = order[int(np.flatnonzero(steps == 0)[0]) + 1]
            raise DataError(f"{path}: frame {k + 1} has the same position along the slice normal as another frame "
                            f"({along[k]:g} mm): a frame stored twice?")
        slice_mm, source = float(np.median(steps)), "DICOM functional groups (PixelSpacing, ImagePositionPatient)"
    else:
        stated = {tag: _functional(ds, frames[0], "PixelMeasuresSequence", tag, path)
                  for tag in ("SpacingBetweenSlices", "SliceThickness")}
        tag = next((t for t, v in stated.items() if v), None)
        slice_mm = stated[tag][0] if tag else None
        source = f"DICOM functional groups (PixelSpacing, {tag}; frames as stored)" if tag else \
            "DICOM functional groups (PixelSpacing; slice spacing unknown, frames as stored)"
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001 - undecodable pixel data
        raise DataError(f"{path}: cannot decode the pixel data of this multi-frame DICOM file: "
                        f"{type(err).__name__}: {err}") from None
    if pixels.ndim != 3 or pixels.shape[0] != n:
        raise DataError(f"{path}: NumberOfFrames {n} but the pixel data holds shape {pixels.shape}")
    # Rescale per frame (PixelValueTransformationSequence): pydicom's apply_rescale reads the top level only.
    rescale = [tuple((_functional(ds, f, "PixelValueTransformationSequence", tag, path) or [default])[0]
                     for tag, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0))) for f in frames]
    volume = np.stack([_as_float32(pixels[k] * np.float64(rescale[k][0]) + rescale[k][1], path)[0].T for k in order],
                      axis=-1)
    info = _geometry(spacings[0], orientation, slice_mm, sign, source)
    if spacings[0] is None:
        info = replace(info, spacing_source="none: the multi-frame DICOM file has no PixelSpacing")
    return volume, info


def _read(path: Path, max_mib: float | None = None) -> tuple[np.ndarray, ReadInfo]:
    if path.is_dir():
        return read_series(path)
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
    if suffix in NIFTI_SUFFIXES:
        check_nifti(path, max_mib)
    if suffix in DICOM_SUFFIXES:
        ds = _read_dicom(path)
        if _frames(ds) > 1:
            _check_declared_size(path, ds, max_mib)
            return read_multiframe(path, ds)
    try:
        image = reader.read(path)
        array, meta = reader.get_data(image)
        array, magnitude = _as_float32(np.asarray(array), path)
        flips = ()
        if isinstance(reader, NibabelReader):
            flips = tuple(a for a in (1, 2) if a < array.ndim)  # RAS -> rows run top-to-bottom (module docstring)
            info = _nifti_info(image, meta, flips)
        elif isinstance(reader, PydicomReader):
            info = _dicom_file_info(image, path)
        else:
            info = ReadInfo(spacing_source="none: a 2-D image file carries no pixel spacing (square pixels assumed)")
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
        raise DataError(f"{path}: cannot read {kind} (corrupt, truncated or not this format): "
                        f"{type(err).__name__}: {err}") from None
    if flips:
        array = np.ascontiguousarray(np.flip(array, axis=flips))
    return array, replace(info, magnitude=magnitude)


def read_input(path: Path | str, max_mib: float | None = None) -> tuple[np.ndarray, ReadInfo]:
    """Read one input as a float32 3-D array (x-first; 2-D images as (W, H, 1)) and its `ReadInfo`
    (voxel spacing, orientation, whether complex voxels became their magnitude).

    Trailing singleton dimensions (a 4-D NIfTI with one frame) are dropped. Raises
    DataError (message starts with `path`) for unreadable files, other dimensionalities,
    empty arrays, NaN/Inf voxels and finite voxels beyond float32's range, and for a NIfTI
    file whose header declares more than `max_mib` MiB as float32 (data.max_volume_mib) or
    more bytes than the file holds.
    """
    path = Path(path)
    array, info = _read(path, max_mib)
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
    return array, info


def load_volume(path: Path | str, max_mib: float | None = None) -> np.ndarray:
    """`read_input`'s voxels alone."""
    return read_input(path, max_mib)[0]


def load_labels(path: Path | str, num_classes: int, max_mib: float | None = None) -> np.ndarray:
    """Read a label map as uint8 (same layout as `load_volume`); values must be the
    integers 0 .. num_classes - 1."""
    return read_labels(path, num_classes, max_mib)[0]


def read_labels(path: Path | str, num_classes: int, max_mib: float | None = None) -> tuple[np.ndarray, ReadInfo]:
    """`load_labels` and the file's `ReadInfo`, for `check_same_grid` against its image."""
    path = Path(path)
    array, info = read_input(path, max_mib)
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise DataError(f"{path}: label map holds non-integer values")
    values = np.unique(rounded)
    if values.min() < 0 or values.max() >= num_classes:
        raise DataError(f"{path}: label values must be integers 0..{num_classes - 1}, found {values.tolist()[:10]}")
    return rounded.astype(np.uint8), info


def check_same_shape(image_path: Path, image: np.ndarray, other_path: Path, other: np.ndarray) -> None:
    """DataError naming `other_path` when a label map (or tissue map) does not match its image."""
    if image.shape != other.shape:
        raise DataError(f"{other_path}: shape {other.shape} does not match {image_path} {image.shape}")


# Relative: scanners and converters write spacings to a few decimals; a label map on another grid differs by far more.
SPACING_TOLERANCE = 0.01


def check_same_grid(image_path: Path, image: ReadInfo, other_path: Path, other: ReadInfo) -> None:
    """DataError naming `other_path` when a label map's voxel grid, as the two files state it, is not its image's.

    The same shape is not enough: a label map resampled to other voxels (1 mm labels of a 1 x 1 x 1.2 mm scan,
    cropped to the same size) or stored along other axes puts every label on other anatomy, and its Dice would be
    computed against the wrong tissue. Spacings a file does not state (PNG) are not compared.
    """
    for axis, (a, b) in enumerate(zip(image.spacing_mm, other.spacing_mm)):
        if a is not None and b is not None and abs(a - b) > SPACING_TOLERANCE * max(a, b):
            raise DataError(f"{other_path}: voxel spacing {_mm(other.spacing_mm)} mm does not match its image "
                            f"{image_path} ({_mm(image.spacing_mm)} mm, axis {axis}): a label map must be drawn on "
                            f"its image's voxel grid (resample it with nearest-neighbour to the image first)")
    if image.array_orientation and other.array_orientation and image.array_orientation != other.array_orientation:
        raise DataError(f"{other_path}: its voxel axes point {other.array_orientation} as loaded, its image "
                        f"{image_path} {image.array_orientation}: a label map must be drawn on its image's voxel grid")


def _mm(spacing: tuple[float | None, ...]) -> str:
    return " x ".join("?" if v is None else f"{v:g}" for v in spacing)


def check_min_size(path: Path, shape: tuple[int, ...], axes: list[int], min_size: int) -> None:
    """DataError when a slice along any of `axes` is smaller than `min_size` (= image_size / scale):
    the HR image would then be an upsampled copy carrying less detail than its own LR input."""
    for axis in axes:
        in_plane = [n for a, n in enumerate(shape) if a != axis]
        if min(in_plane) < min_size:
            raise DataError(f"{path}: slices along axis {axis} are {in_plane[1]}x{in_plane[0]} pixels, smaller than "
                            f"data.image_size / data.scale = {min_size}")
