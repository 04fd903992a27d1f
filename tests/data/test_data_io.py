"""Reading NIfTI, DICOM (file and series) and 8/16-bit PNG/TIFF through src/data/io.py, and its errors."""

import gzip

import numpy as np
import pytest
from datatest_helpers import synthetic_head, write_dicom, write_image, write_nifti

from src.data.io import DataError, find_inputs, input_stem, load_labels, load_volume
from src.checksum import sha256


def test_nifti_is_float32_with_rows_running_down(tmp_path):
    image, _ = synthetic_head()
    path = write_nifti(tmp_path / "head.nii.gz", image)
    vol = load_volume(path)
    assert vol.dtype == np.float32 and vol.shape == image.shape
    # RAS on disk; axes 1 and 2 flipped so they run top-to-bottom like image rows.
    np.testing.assert_allclose(vol, image[:, ::-1, ::-1])


def test_dicom_file_and_series(tmp_path):
    pixels = (np.arange(12 * 20).reshape(12, 20) * 7).astype(np.uint16)
    single = load_volume(write_dicom(tmp_path / "one.dcm", pixels))
    assert single.shape == (20, 12, 1)  # x-first: (cols, rows, 1)
    np.testing.assert_array_equal(single[:, :, 0].T, pixels)

    series = tmp_path / "series"
    series.mkdir()
    for i in range(4):  # written in reverse instance order: the reader sorts by InstanceNumber
        write_dicom(series / f"f{i}.dcm", pixels + i, instance=4 - i, z=float(4 - i))
    vol = load_volume(series)
    assert vol.shape == (20, 12, 4)
    assert [vol[0, 0, k] for k in range(4)] == [3.0, 2.0, 1.0, 0.0]


@pytest.mark.parametrize("name,dtype", [("a.png", np.uint8), ("b.png", np.uint16), ("c.tif", np.uint16),
                                        ("d.tiff", np.uint16)])
def test_png_tiff_8_and_16_bit(tmp_path, name, dtype):
    pixels = (np.arange(20 * 30).reshape(20, 30) * (100 if dtype == np.uint16 else 1) % np.iinfo(dtype).max).astype(dtype)
    vol = load_volume(write_image(tmp_path / name, pixels))
    assert vol.dtype == np.float32 and vol.shape == (30, 20, 1)
    np.testing.assert_array_equal(vol[:, :, 0].T, pixels.astype(np.float32))


def test_find_inputs_is_sorted_and_sees_series_folders(tmp_path):
    write_image(tmp_path / "b.png", np.zeros((8, 8), np.uint8))
    write_nifti(tmp_path / "a.nii.gz", np.zeros((4, 4, 4), np.float32))
    (tmp_path / "c").mkdir()
    write_dicom(tmp_path / "c" / "x.dcm", np.zeros((4, 4), np.uint16))
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    found = find_inputs(tmp_path)
    assert [p.name for p in found] == ["a.nii.gz", "b.png", "c"]
    assert [input_stem(p) for p in found] == ["a", "b", "c"]


def test_labels_must_be_class_integers(tmp_path):
    labels = np.zeros((6, 6, 3), np.float32)
    labels[2:4, 2:4] = 3
    np.testing.assert_array_equal(load_labels(write_nifti(tmp_path / "ok.nii.gz", labels), 4), labels[:, ::-1, ::-1])
    labels[0, 0, 0] = 1.5
    with pytest.raises(DataError, match=r"^.*bad\.nii\.gz: label map holds non-integer"):
        load_labels(write_nifti(tmp_path / "bad.nii.gz", labels), 4)
    labels[0, 0, 0] = 7
    with pytest.raises(DataError, match="integers 0..3"):
        load_labels(write_nifti(tmp_path / "bad7.nii.gz", labels), 4)


def test_sha256_of_file_and_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.dcm").write_bytes(b"abc")
    assert sha256(tmp_path / "s" / "a.dcm") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert len(sha256(tmp_path / "s")) == 64


# ------------------------------------------------------------------ errors: message starts with the path


def _valid_nifti_bytes(tmp_path):
    return write_nifti(tmp_path / "valid.nii.gz", synthetic_head()[0]).read_bytes()


def _bad_inputs(tmp_path, kind):
    if kind == "corrupt_nifti":
        path = tmp_path / "x.nii.gz"
        path.write_bytes(b"this is not a nifti file" * 20)
    elif kind == "corrupt_plain_nifti":
        path = tmp_path / "x.nii"
        path.write_bytes(b"\x00" * 100)
    elif kind == "truncated_nifti":
        path = tmp_path / "x.nii.gz"
        path.write_bytes(_valid_nifti_bytes(tmp_path)[:2000])
    elif kind == "truncated_uncompressed_nifti":
        path = tmp_path / "x.nii"
        path.write_bytes(gzip.decompress(_valid_nifti_bytes(tmp_path))[:1000])
    elif kind == "corrupt_dicom":
        path = tmp_path / "x.dcm"
        path.write_bytes(b"garbage" * 50)
    elif kind == "truncated_dicom":
        path = tmp_path / "x.dcm"
        full = write_dicom(tmp_path / "full.dcm", np.ones((32, 32), np.uint16)).read_bytes()
        path.write_bytes(full[:400])
    elif kind == "corrupt_png":
        path = tmp_path / "x.png"
        full = write_image(tmp_path / "full.png", (np.arange(64 * 64).reshape(64, 64) % 65535).astype(np.uint16))
        path.write_bytes(full.read_bytes()[:80])
    elif kind == "nan":
        vol = synthetic_head()[0]
        vol[3, 4, 5] = np.nan
        path = write_nifti(tmp_path / "x.nii.gz", vol)
    elif kind == "inf":
        vol = synthetic_head()[0]
        vol[3, 4, 5] = np.inf
        path = write_nifti(tmp_path / "x.nii.gz", vol)
    elif kind == "unsupported":
        path = tmp_path / "x.jpg"
        path.write_bytes(b"\xff\xd8\xff")
    elif kind == "missing":
        path = tmp_path / "missing.nii.gz"
    return path


@pytest.mark.parametrize("kind", ["corrupt_nifti", "corrupt_plain_nifti", "truncated_nifti",
                                  "truncated_uncompressed_nifti", "corrupt_dicom", "truncated_dicom",
                                  "corrupt_png", "nan", "inf", "unsupported", "missing"])
def test_bad_file_raises_data_error_naming_it(tmp_path, kind):
    path = _bad_inputs(tmp_path, kind)
    with pytest.raises(DataError) as info:
        load_volume(path)
    assert str(info.value).startswith(str(path))


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing: folder not found"):
        find_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found"):
        find_inputs(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: unsupported file type"):
        find_inputs(tmp_path / "mixed")
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "s1").mkdir()
    (tmp_path / "series" / "s1" / "a.dcm").write_bytes(b"not dicom")
    with pytest.raises(DataError, match=r"a\.dcm: not a DICOM file"):
        find_inputs(tmp_path / "series")
    (tmp_path / "dup").mkdir()
    write_image(tmp_path / "dup" / "a.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "dup" / "a.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="same name"):
        find_inputs(tmp_path / "dup")
