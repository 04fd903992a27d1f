"""Fault injection into the geometry `prepare` reads: a DICOM series mixing planes or pixel spacings, and a float64
volume beyond float32's range, stop the stage with one error naming the file and what differs, exit 1, the previous
outputs byte-identical and nothing left over; anisotropic voxels and complex voxels are read right and recorded."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from faults_helpers import (PREPARE_OUTPUTS, expect_failure, last_line, leftovers, run_prepare, snapshot,
                            write_params)
from pydicom import dcmread

from src import prepare
from src.data.io import load_volume, read_input
from src.data.preprocess import foreground_mask
from tests.data.datatest_helpers import base_params, synthetic_head, write_dicom, write_nifti

pytestmark = pytest.mark.faults

OUTPUTS = PREPARE_OUTPUTS
SHAPE = (40, 44, 36)
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # ImageOrientationPatient; the series is axial [1, 0, 0, 0, 1, 0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A user folder with one head (no labels) and the outputs of a good `prepare` run on it."""
    root = tmp_path_factory.mktemp("geometry")
    (root / "user/images").mkdir(parents=True)
    write_nifti(root / "user/images/head0.nii.gz", synthetic_head(SHAPE)[0])
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert prepare.main(["--params", str(write_params(root, base_params()))]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def tree(baseline, tmp_path, monkeypatch):
    """A copy of the baseline (user/images/head0.nii.gz and prepare's outputs) as the working directory."""
    root = tmp_path / "w"
    shutil.copytree(baseline, root)
    monkeypatch.chdir(root)
    return root


def _series(folder: Path, n: int = 36, seed: int = 1, tags: dict[int, dict] | None = None) -> Path:
    """A DICOM series of a head, one file per slice (1 mm apart, axial, 1 x 1 mm pixels); tags[k]: DICOM
    attributes set in file k after writing (ImageOrientationPatient, PixelSpacing)."""
    head, _ = synthetic_head((40, 44, n), seed=seed)
    folder.mkdir(parents=True)
    for k in range(n):
        path = write_dicom(folder / f"im{k:03d}.dcm", (head[:, :, k] * 100).astype(np.uint16), instance=k + 1,
                           z=float(k))
        if (tags or {}).get(k):
            ds = dcmread(path)
            for name, value in tags[k].items():
                setattr(ds, name, value)
            ds.save_as(path)
    return folder


def _all_hr(root: Path) -> np.ndarray:
    return np.concatenate([np.load(root / f"data/prepared/sr/{split}/hr.npy") for split in ("train", "val", "test")])


def _aspect(mask: np.ndarray, row_mm: float = 1.0, col_mm: float = 1.0) -> float:
    """Height / width (mm) of the bounding box of a 2-D mask (for the expected value: the union of the head's
    foreground, as prepare finds it, over its axial slices)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (rows[-1] - rows[0] + 1) * row_mm / ((cols[-1] - cols[0] + 1) * col_mm)


# ------------------------------------------------------------------ DICOM series of several planes or pixel sizes


def test_dicom_series_mixing_orientations_is_refused(tree, capsys):
    """A 3-plane localizer under one SeriesInstanceUID (axial, sagittal, coronal thirds): before the fix its
    files were stacked into one volume of mixed planes, exit 0."""
    tags = {k: {"ImageOrientationPatient": SAGITTAL if k < 24 else CORONAL} for k in range(12, 36)}
    _series(tree / "user/images/zz", tags=tags)
    expect_failure(tree, capsys, "user/images/zz/im012.dcm", "ImageOrientationPatient",
                   "[0, 1, 0, 0, 0, -1] (sagittal)", "im000.dcm's [1, 0, 0, 0, 1, 0] (axial)", workers=1)


def test_dicom_series_mixing_pixel_spacings_is_refused(tree, capsys):
    """One file of the series with 0.5 mm pixels among 1 mm ones (was: stacked, exit 0)."""
    _series(tree / "user/images/zz", tags={20: {"PixelSpacing": [0.5, 0.5]}})
    expect_failure(tree, capsys, "user/images/zz/im020.dcm", "PixelSpacing [0.5, 0.5]", "im000.dcm's [1, 1]",
                   workers=1)


# ------------------------------------------------------------------ enhanced (multi-frame) DICOM


def _multiframe(path: Path, frames: np.ndarray, positions: list[float] | None, slice_mm: float = 4.0,
                orientation: dict[int, list[float]] | None = None, slope: float = 2.0, intercept: float = -10.0) -> Path:
    """An Enhanced MR Image file of `frames` (n, rows, cols) uint16: 1 x 1 mm pixels, axial; frame k at
    z = positions[k] (PlanePositionSequence per frame; None: no positions, SliceThickness `slice_mm` only);
    orientation[k]: that frame's own PlaneOrientationSequence; rescale in the shared functional group."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    def item(**tags) -> Dataset:
        ds = Dataset()
        for name, value in tags.items():
            setattr(ds, name, value)
        return ds

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = EnhancedMRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "MR", "0"
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SharedFunctionalGroupsSequence = [item(
        PixelMeasuresSequence=[item(PixelSpacing=[1.0, 1.0], SliceThickness=slice_mm)],
        PlaneOrientationSequence=[item(ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0])],
        PixelValueTransformationSequence=[item(RescaleSlope=slope, RescaleIntercept=intercept)])]
    per_frame = []
    for k in range(len(frames)):
        group = item()
        if positions is not None:
            group.PlanePositionSequence = [item(ImagePositionPatient=[0.0, 0.0, float(positions[k])])]
        if (orientation or {}).get(k):
            group.PlaneOrientationSequence = [item(ImageOrientationPatient=orientation[k])]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _head_frames(n: int = 12) -> np.ndarray:
    """(n, rows 40, cols 44) uint16 frames of a head, frame k = axial slice k."""
    head, _ = synthetic_head((40, 44, n), seed=5)
    # Noise in the head: no two neighbouring slices of this smooth phantom are near-twins for the leakage check.
    noisy = head * 100 + (head > 0) * np.random.default_rng(5).uniform(0, 40, head.shape)
    return np.ascontiguousarray(noisy.astype(np.uint16).transpose(2, 0, 1))


def test_multiframe_dicom_is_ordered_and_its_geometry_read(workdir, capsys):
    """An enhanced multi-frame file with 4 mm between frames, stored in reverse order, rescaled in its shared
    functional group. Before: MONAI's reader kept the stored order in a (rows, frames, cols) array, applied no
    rescale and read no spacing, so slices across the frames came out squashed 4:1, silently."""
    (workdir / "user/images").mkdir(parents=True)
    frames = _head_frames(36)
    n = len(frames)
    path = _multiframe(workdir / "user/images/mf.dcm", frames[::-1], positions=[4.0 * (n - 1 - k) for k in range(n)])
    volume, info = read_input(path)
    expected = np.stack([frames[k].T.astype(np.float32) * 2 - 10 for k in range(n)], axis=-1)  # (cols, rows, z up)
    np.testing.assert_array_equal(volume, expected)
    assert info.spacing_mm == (1.0, 1.0, 4.0) and "functional groups" in info.spacing_source
    assert (info.orientation, info.array_orientation) == ("LPS", "LPS")
    # prepare records the geometry read; slices in the acquired plane (axis 2) have square pixels. Slicing
    # across the frames would resample them from this spacing (test_anisotropic_voxels_are_resampled_...).
    rc, err = run_prepare(workdir, capsys, workers=1)
    assert rc == 0, err
    (entry,) = json.loads((workdir / "data/prepared/manifest.json").read_text())["volumes"]
    assert entry["geometry"]["spacing_mm"] == [1.0, 1.0, 4.0] and "functional groups" in entry["geometry"]["spacing_source"]
    assert entry["geometry"]["slices"] == [{"axis": 2, "pixel_mm": [1.0, 1.0], "resampled": False,
                                            "pixels": [40, 44], "resampled_pixels": [40, 44]}]  # DICOM rows, cols
    assert leftovers(workdir) == []


def test_multiframe_dicom_without_positions_uses_its_stated_thickness_in_stored_order(workdir):
    frames = _head_frames(6)
    volume, info = read_input(_multiframe(workdir / "mf.dcm", frames, positions=None, slice_mm=3.0))
    np.testing.assert_array_equal(volume[..., 0], frames[0].T.astype(np.float32) * 2 - 10)
    assert info.spacing_mm == (1.0, 1.0, 3.0) and "SliceThickness" in info.spacing_source


def test_multiframe_dicom_mixing_planes_is_refused(tree, capsys):
    """A multi-frame localizer: frame 7 sagittal among axial frames (was: stacked into one volume, exit 0)."""
    frames = _head_frames()
    _multiframe(tree / "user/images/mf.dcm", frames, positions=[4.0 * k for k in range(len(frames))],
                orientation={6: SAGITTAL})
    expect_failure(tree, capsys, "user/images/mf.dcm", "frame 7", "ImageOrientationPatient",
                   "[0, 1, 0, 0, 0, -1] (sagittal)", "(axial)", workers=1)


def test_multiframe_dicom_with_a_frame_stored_twice_is_refused(tree, capsys):
    frames = _head_frames()
    positions = [4.0 * k for k in range(len(frames))]
    positions[5] = positions[4]
    _multiframe(tree / "user/images/mf.dcm", frames, positions=positions)
    expect_failure(tree, capsys, "user/images/mf.dcm", "frame", "same position", workers=1)


# ------------------------------------------------------------------ anisotropic voxels


def _thick_slice_nifti(root: Path) -> dict:
    """A head acquired in 4 mm coronal slabs (voxels 1 x 4 x 1 mm), as NIfTI."""
    image, _ = synthetic_head((40, 12, 36), seed=3)
    path = root / "user/images/thick.nii.gz"
    nib.Nifti1Image(image, np.diag([1.0, 4.0, 1.0, 1.0])).to_filename(path)
    # Axial slices: rows run along array axis 1 (4 mm), columns along axis 0 (1 mm).
    return {"path": path, "aspect": _aspect(foreground_mask(image).any(axis=2).T, 4.0, 1.0),
            "spacing_mm": [1.0, 4.0, 1.0], "orientation": "RAS", "array_orientation": "RPI", "pixel_mm": [4.0, 1.0],
            "pixels": [12, 40], "resampled_pixels": [48, 40], "warned": True}


def _rectangular_pixel_series(root: Path) -> dict:
    """A DICOM series with 2 x 1 mm pixels (PixelSpacing [2, 1]: rows 2 mm apart, columns 1 mm), slices 1 mm apart."""
    n = 36
    series = _series(root / "user/images/rect", n=n, tags={k: {"PixelSpacing": [2.0, 1.0]} for k in range(n)})
    head, _ = synthetic_head((40, 44, n), seed=1)
    # Array (cols, rows, slices); axial slices: rows along axis 1 (the DICOM rows, 2 mm), columns along axis 0.
    return {"path": series, "aspect": _aspect(foreground_mask(head).any(axis=2), 2.0, 1.0),
            "spacing_mm": [1.0, 2.0, 1.0], "orientation": "LPS", "array_orientation": "LPS", "pixel_mm": [2.0, 1.0],
            "pixels": [40, 44], "resampled_pixels": [80, 44], "warned": False}


@pytest.mark.parametrize("make", [_thick_slice_nifti, _rectangular_pixel_series], ids=["nifti_1x4x1mm", "dicom_2x1mm"])
def test_anisotropic_voxels_are_resampled_to_square_pixels(workdir, capsys, caplog, make):
    """Before the fix a 1 x 4 mm pixel was resized as if square: the head came out squashed 4:1, silently.
    Now the slices keep the anatomy's aspect ratio, and the manifest says what was read and done."""
    (workdir / "user/images").mkdir(parents=True)
    case = make(workdir)
    with caplog.at_level(logging.WARNING, logger="src.data.volumes"):
        rc, err = run_prepare(workdir, capsys, workers=1)
    assert rc == 0, err
    hr = _all_hr(workdir)
    assert hr.shape[1:] == (1, 32, 32)
    measured = _aspect((hr[:, 0] > -1).any(axis=0))
    assert measured == pytest.approx(case["aspect"], rel=0.12), (measured, case["aspect"])
    (volume,) = json.loads((workdir / "data/prepared/manifest.json").read_text())["volumes"]
    geometry = volume["geometry"]
    assert geometry["spacing_mm"] == case["spacing_mm"]
    assert (geometry["orientation"], geometry["array_orientation"]) == (case["orientation"], case["array_orientation"])
    assert geometry["complex_magnitude"] is False
    assert geometry["slices"] == [{"axis": 2, "pixel_mm": case["pixel_mm"], "resampled": True,
                                   "pixels": case["pixels"], "resampled_pixels": case["resampled_pixels"]}]
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "interpolating" in r.getMessage()]
    if case["warned"]:
        assert len(warnings) == 1 and str(case["path"].relative_to(workdir)) in warnings[0], warnings
        assert "axis 2" in warnings[0] and "slices along axis 1 (the acquired plane)" in warnings[0], warnings
    else:
        assert warnings == []
    assert leftovers(workdir) == []


def test_isotropic_volume_is_recorded_and_not_resampled(tree):
    """The baseline head (1 mm isotropic NIfTI, unit affine): geometry recorded, today's path taken."""
    (volume,) = json.loads((tree / "data/prepared/manifest.json").read_text())["volumes"]
    assert volume["geometry"]["spacing_mm"] == [1.0, 1.0, 1.0]
    assert volume["geometry"]["slices"] == [{"axis": 2, "pixel_mm": [1.0, 1.0], "resampled": False,
                                             "pixels": [44, 40], "resampled_pixels": [44, 40]}]


# ------------------------------------------------------------------ complex and out-of-range voxels


def test_complex_nifti_is_read_as_its_magnitude(workdir, capsys, caplog):
    """A complex NIfTI (magnitude and a phase ramp): before the fix a cast kept the real part, m cos(phase),
    silently. Now it reads as the magnitude: the prepared slices match those of the magnitude saved as float32."""
    (workdir / "user/images").mkdir(parents=True)
    magnitude = synthetic_head(SHAPE, seed=4)[0]
    phase = np.linspace(0.0, 3 * np.pi, magnitude.size).reshape(SHAPE)
    path = workdir / "user/images/cplx.nii.gz"
    nib.Nifti1Image((magnitude * np.exp(1j * phase)).astype(np.complex64), np.eye(4)).to_filename(path)
    np.testing.assert_allclose(load_volume(path), magnitude[:, ::-1, ::-1], rtol=1e-6, atol=1e-5)
    with caplog.at_level(logging.WARNING, logger="src.data.volumes"):
        rc, err = run_prepare(workdir, capsys, workers=1)
    assert rc == 0, err
    assert any("cplx.nii.gz" in r.getMessage() and "magnitude" in r.getMessage() for r in caplog.records)
    (volume,) = json.loads((workdir / "data/prepared/manifest.json").read_text())["volumes"]
    assert volume["geometry"]["complex_magnitude"] is True
    from_complex = _all_hr(workdir)
    write_nifti(path, magnitude)
    rc, err = run_prepare(workdir, capsys, workers=1)
    assert rc == 0, err
    np.testing.assert_allclose(from_complex, _all_hr(workdir), atol=1e-5)
    assert leftovers(workdir) == []


def test_float64_volume_beyond_float32_range_is_named_as_such(tree, capsys):
    """A finite float64 voxel of 1e300: before the fix the cast made it Inf and the error said "NaN or Inf",
    which the file does not hold."""
    image = synthetic_head(SHAPE, seed=1)[0].astype(np.float64)
    image[20, 20, 20] = 1e300
    write_nifti(tree / "user/images/zz.nii.gz", image)
    err = expect_failure(tree, capsys, "user/images/zz.nii.gz", "beyond float32's range", "1e+300")
    assert "NaN" not in err
