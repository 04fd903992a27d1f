"""Geometry read by src/data/io.py (spacing, orientation, complex and out-of-range voxels) and the square-pixel
resampling of src/data/preprocess.py, on hand-made inputs with known answers."""

import nibabel as nib
import numpy as np
import pytest
from datatest_helpers import write_dicom, write_image, write_nifti
from pydicom import dcmread

from src.data.io import DataError, read_input
from src.data.preprocess import resample_images, resample_labels, slice_geometry, slices_along, square_pixel_shape


def _set_tags(path, **tags):
    ds = dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path)
    return path


# ------------------------------------------------------------------ spacing and orientation read


def test_nifti_spacing_follows_the_reorientation_and_the_file_orientation_is_kept(tmp_path):
    """File axes i, j, k run to S (4 mm), R (2 mm), A (3 mm): reoriented to RAS the array is (j, k, i)."""
    affine = np.array([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    path = tmp_path / "sra.nii.gz"
    nib.Nifti1Image(np.random.default_rng(0).random((5, 6, 7), dtype=np.float32), affine).to_filename(path)
    vol, info = read_input(path)
    assert vol.shape == (6, 7, 5)
    assert info.spacing_mm == (2.0, 3.0, 4.0)
    assert (info.orientation, info.array_orientation) == ("SRA", "RPI")
    assert info.magnitude is False


def test_nifti_spacing_is_converted_to_mm_from_the_header_unit(tmp_path):
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
    image.header.set_xyzt_units("micron")
    image.to_filename(tmp_path / "um.nii.gz")
    assert read_input(tmp_path / "um.nii.gz")[1].spacing_mm == (0.0005, 0.0005, 0.002)


def test_dicom_series_spacing_comes_from_pixel_spacing_and_slice_positions(tmp_path):
    """PixelSpacing is (between rows, between columns); the array is (cols, rows, slices). Positions 3 mm apart
    win over SliceThickness (1 mm in the helper's files)."""
    series = tmp_path / "s"
    series.mkdir()
    for k in range(4):
        _set_tags(write_dicom(series / f"f{k}.dcm", np.full((8, 6), k, np.uint16), instance=k + 1, z=3.0 * k),
                  PixelSpacing=[0.5, 0.8])
    vol, info = read_input(series)
    assert vol.shape == (6, 8, 4)
    assert info.spacing_mm == (0.8, 0.5, 3.0)
    assert info.orientation == info.array_orientation == "LPS"
    assert "ImagePositionPatient" in info.spacing_source


def test_single_dicom_file_spacing_and_png_without_spacing(tmp_path):
    path = _set_tags(write_dicom(tmp_path / "one.dcm", np.ones((8, 6), np.uint16)), PixelSpacing=[0.5, 0.8],
                     SliceThickness=5.0)
    assert read_input(path)[1].spacing_mm == (0.8, 0.5, 5.0)
    info = read_input(write_image(tmp_path / "one.png", np.ones((8, 6), np.uint8)))[1]
    assert info.spacing_mm == (None, None, None) and info.orientation is None


def test_dicom_series_of_three_planes_is_refused_naming_the_file_and_both_planes(tmp_path):
    series = tmp_path / "localizer"
    series.mkdir()
    planes = [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]]
    for k, plane in enumerate(planes):
        _set_tags(write_dicom(series / f"f{k}.dcm", np.ones((8, 8), np.uint16), instance=k + 1, z=0.0),
                  ImageOrientationPatient=plane)
    with pytest.raises(DataError, match=r"f1\.dcm: ImageOrientationPatient \[0, 1, 0, 0, 0, -1\] \(sagittal\) "
                                        r"differs from f0\.dcm's \[1, 0, 0, 0, 1, 0\] \(axial\)"):
        read_input(series)


# ------------------------------------------------------------------ complex and out-of-range voxels


def test_complex_voxels_become_their_magnitude(tmp_path):
    """Phase pi/2: the real part, which a cast keeps, is ~0 everywhere; the magnitude is 3, 4 or 5."""
    magnitude = np.array([3.0, 4.0, 5.0] * 8, np.float32).reshape(2, 3, 4)
    path = write_nifti(tmp_path / "c.nii.gz", (magnitude * np.exp(0.5j * np.pi)).astype(np.complex64))
    vol, info = read_input(path)
    np.testing.assert_allclose(vol, magnitude[:, ::-1, ::-1], rtol=1e-6)
    assert vol.dtype == np.float32 and info.magnitude is True


def test_complex64_whose_magnitude_passes_float32_max_is_named(tmp_path):
    """3e38 + 3e38j fits complex64, but its magnitude 4.2e38 does not fit float32 (computed in float64, not Inf)."""
    path = write_nifti(tmp_path / "c.nii.gz", np.full((2, 2, 2), 3e38 + 3e38j, np.complex64))
    with pytest.raises(DataError, match=r"c\.nii\.gz: 8 of 8 voxels hold finite values beyond float32's range "
                                        r"\(largest magnitude 4\.24e\+38"):
        read_input(path)


def test_float64_beyond_float32_range_is_named_and_within_it_is_read(tmp_path):
    image = np.ones((3, 3, 3))
    image[1, 1, 1] = 1e30
    assert read_input(write_nifti(tmp_path / "ok.nii.gz", image))[0].max() == np.float32(1e30)
    image[1, 1, 1] = -1e39
    with pytest.raises(DataError, match=r"big\.nii\.gz: 1 of 27 voxels hold finite values beyond float32's range "
                                        r"\(largest magnitude 1e\+39"):
        read_input(write_nifti(tmp_path / "big.nii.gz", image))


# ------------------------------------------------------------------ square pixels


def test_slice_geometry_matches_slices_along():
    shape, spacing = (2, 3, 5), (1.0, 2.0, 3.0)
    expected = {0: (3.0, 2.0), 1: (3.0, 1.0), 2: (2.0, 1.0)}  # (row, col) mm: rows run along the later axis
    for axis in range(3):
        pixels, pixel_mm = slice_geometry(shape, spacing, axis)
        assert pixels == slices_along(np.zeros(shape), axis).shape[1:]
        assert pixel_mm == expected[axis]


@pytest.mark.parametrize("shape,spacing,square", [
    ((12, 40), (4.0, 1.0), (48, 40)),       # 4 mm rows: four times as many
    ((10, 20), (1.0, 2.5), (10, 50)),
    ((64, 64), (2.0, 2.0), (64, 64)),       # isotropic: unchanged
    ((100, 100), (1.004, 1.0), (100, 100)),  # off by less than half a pixel across the slice: unchanged
    ((12, 40), (None, 1.0), (12, 40)),      # spacing unknown: unchanged
])
def test_square_pixel_shape(shape, spacing, square):
    assert square_pixel_shape(shape, spacing) == square


def test_resampling_a_disc_sampled_at_4_by_1_mm_gives_back_a_disc():
    """A disc of radius 16 mm sampled on 4 x 1 mm pixels (squashed 4:1 in pixels) is round again once resampled."""
    rows, cols = np.meshgrid((np.arange(12) - 5.5) * 4.0, np.arange(48) - 23.5, indexing="ij")
    disc = ((rows ** 2 + cols ** 2) < 16.0 ** 2).astype(np.uint8)[None]
    shape = square_pixel_shape(disc.shape[1:], (4.0, 1.0))
    assert shape == (48, 48)
    for resampled in (resample_labels(disc, shape)[0] > 0, resample_images(disc.astype(np.float32), shape)[0] > 0.5):
        height, width = resampled.any(axis=1).sum(), resampled.any(axis=0).sum()
        assert abs(height - width) <= 4, (height, width)  # was 8 rows against 32 columns
    assert set(np.unique(resample_labels(disc * 3, shape))) == {0, 3}
