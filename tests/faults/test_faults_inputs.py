"""Fault injection into `prepare`'s inputs: each bad input stops the stage with one error naming the file or key,
exit 1, the previous outputs byte-identical and no staging folder left; odd but valid inputs are read right."""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from faults_helpers import (PREPARE_OUTPUTS, expect_failure, last_line, leftovers, run_prepare, snapshot, stage_env,
                            write_params)

from src import prepare, template
from src.data.splits import volume_splits
from tests.data.datatest_helpers import base_params, synthetic_head, write_dicom, write_image, write_nifti

pytestmark = pytest.mark.faults

OUTPUTS = PREPARE_OUTPUTS
SHAPE = (40, 44, 36)


def _baseline(factory, name: str, labels: bool) -> Path:
    """A user folder with one head (and its labels) and the outputs of a good `prepare` run on it."""
    root = factory.mktemp(name)
    (root / "user/images").mkdir(parents=True)
    image, lab = synthetic_head(SHAPE)
    write_nifti(root / "user/images/head0.nii.gz", image)
    if labels:
        (root / "user/labels").mkdir()
        write_nifti(root / "user/labels/head0.nii.gz", lab)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        raw = base_params()
        assert prepare.main(["--params", str(write_params(root, raw))]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def sr_only_baseline(tmp_path_factory):
    return _baseline(tmp_path_factory, "sr_only", labels=False)


@pytest.fixture(scope="module")
def labelled_baseline(tmp_path_factory):
    return _baseline(tmp_path_factory, "labelled", labels=True)


def _copy(baseline: Path, tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "w"
    shutil.copytree(baseline, root)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def tree(sr_only_baseline, tmp_path, monkeypatch):
    """A copy of the SR-only baseline (images/head0.nii.gz and prepare's outputs) as the working directory."""
    return _copy(sr_only_baseline, tmp_path, monkeypatch)


@pytest.fixture
def labelled(labelled_baseline, tmp_path, monkeypatch):
    """A copy of the labelled baseline (images/ and labels/head0.nii.gz, sr and sim2real outputs)."""
    return _copy(labelled_baseline, tmp_path, monkeypatch)


def nifti_header_only(shape, dtype=np.float32) -> bytes:
    """A NIfTI-1 header (and the 4-byte extension flag) declaring `shape`, with no voxel data after it."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4


# ------------------------------------------------------------------ NIfTI


@pytest.mark.parametrize("workers", [1, 2], ids=["in_process", "pool"])
def test_corrupt_nifti(tree, capsys, workers):
    # With two volumes and two workers the file is read in a pool worker: its error must name it all the same.
    (tree / "user/images/zz.nii.gz").write_bytes(b"not a nifti file" * 30)
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "cannot read", workers=workers)


def test_truncated_gzipped_nifti(tree, capsys):
    full = (tree / "user/images/head0.nii.gz").read_bytes()
    (tree / "user/images/zz.nii.gz").write_bytes(full[: len(full) // 2])
    expect_failure(tree, capsys, "user/images/zz.nii.gz")


def test_truncated_plain_nifti(tree, capsys):
    """An uncompressed file cut after its header: the header promises more voxels than the file holds."""
    full = gzip.decompress((tree / "user/images/head0.nii.gz").read_bytes())
    (tree / "user/images/zz.nii").write_bytes(full[:5000])
    expect_failure(tree, capsys, "user/images/zz.nii", "truncated")


def test_nifti_header_declaring_8_gib_is_refused_before_reading(tree):
    """Cause 2: a ~100-byte file whose header declares an 8 GiB volume. Before the fix the reader allocated it
    (9.5 GB RSS, then a MemoryError traceback). Run as a process with its address space capped at 6 GiB."""
    bad = tree / "user/images/zz.nii.gz"
    bad.write_bytes(gzip.compress(nifti_header_only((2048, 2048, 512))))
    assert bad.stat().st_size < 200
    params = write_params(tree, base_params())
    before = snapshot(tree, *OUTPUTS)

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    result = subprocess.run([sys.executable, "-m", "src.prepare", "--params", str(params)], cwd=tree, env=stage_env(),
                            capture_output=True, text=True, timeout=300, preexec_fn=cap_memory)
    err = last_line(result.stderr)
    assert result.returncode == 1, result.stderr[-3000:]
    assert err.startswith("error: prepare: user/images/zz.nii.gz") and "data.max_volume_mib" in err, err
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tree, *OUTPUTS) == before and leftovers(tree) == []


def test_nifti_over_the_memory_limit_param(tree, capsys):
    """Cause 2: a well-formed volume bigger than data.max_volume_mib is refused from its header."""
    write_nifti(tree / "user/images/zz.nii.gz", synthetic_head((80, 88, 72), seed=1)[0])  # 1.9 MiB, head0 0.2
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "1.9 MiB", "data.max_volume_mib = 1", max_volume_mib=1.0)


def test_4d_volume(tree, capsys):
    write_nifti(tree / "user/images/zz.nii.gz", np.stack([synthetic_head(SHAPE)[0]] * 3, axis=-1))
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "expected a 2-D image or a 3-D volume")


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_voxels(tree, capsys, value):
    image = synthetic_head(SHAPE, seed=1)[0]
    image[20, 20, 20] = value
    write_nifti(tree / "user/images/zz.nii.gz", image)
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "NaN or Inf")


def test_constant_image(tree, capsys):
    write_nifti(tree / "user/images/zz.nii.gz", np.full(SHAPE, 7.0, np.float32))
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "no foreground")


def test_image_too_small_for_the_scale(tree, capsys):
    write_nifti(tree / "user/images/zz.nii.gz", synthetic_head((6, 6, 30))[0])
    expect_failure(tree, capsys, "user/images/zz.nii.gz", "data.image_size / data.scale")


# ------------------------------------------------------------------ folders and 2-D images


def test_empty_images_folder(tree, capsys):
    shutil.rmtree(tree / "user/images")
    (tree / "user/images").mkdir()
    expect_failure(tree, capsys, "user/images: no images found")


def test_unsupported_file_type(tree, capsys):
    (tree / "user/images/notes.txt").write_text("scan notes")
    expect_failure(tree, capsys, "user/images/notes.txt", "unsupported file type")


def test_two_inputs_with_one_name(tree, capsys):
    write_nifti(tree / "user/images/head0.nii", synthetic_head(SHAPE, seed=1)[0])
    expect_failure(tree, capsys, "head0", "same name")


def _disc(seed: int) -> np.ndarray:
    image, _ = synthetic_head((48, 52, 3), seed=seed)
    return image[:, :, 1].T


@pytest.mark.parametrize("mode", ["16-bit grey", "RGB"])
def test_png_slices_are_read_as_grey(workdir, capsys, mode):
    """Valid odd inputs: 16-bit PNGs keep their full range; RGB PNGs are averaged to grey. Both prepare cleanly."""
    (workdir / "user/images").mkdir(parents=True)
    for i in range(5):
        disc = _disc(i)
        pixels = (disc * 400).astype(np.uint16) if mode == "16-bit grey" else \
            np.stack([(disc * 2).clip(0, 255).astype(np.uint8)] * 3, axis=-1)
        write_image(workdir / f"user/images/slice{i}.png", pixels)
    rc, err = run_prepare(workdir, capsys)
    assert rc == 0, err
    hr = np.load(workdir / "data/prepared/sr/train/hr.npy")
    assert hr.min() == -1.0 and hr.max() > 0.5 and len(np.unique(hr)) > 50  # not clipped to a few levels
    assert leftovers(workdir) == []


# ------------------------------------------------------------------ DICOM


def _series(folder: Path, n: int = 36, seed: int = 1, overrides: dict | None = None) -> Path:
    """A DICOM series of a head, one file per slice along its egg-shaped axis (so no two slabs look alike);
    overrides[k]: write_dicom keyword arguments for file k."""
    head, _ = synthetic_head((40, 44, n), seed=seed)
    folder.mkdir(parents=True)
    for k in range(n):
        kwargs = {"instance": k + 1, "z": float(k), **(overrides or {}).get(k, {})}
        write_dicom(folder / f"im{k:03d}.dcm", (head[:, :, k] * 100).astype(np.uint16), **kwargs)
    return folder


def test_undecodable_dicom_file(tree, capsys):
    (tree / "user/images/zz.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    expect_failure(tree, capsys, "user/images/zz.dcm")


def test_dicom_series_with_a_non_dicom_file(tree, capsys):
    series = _series(tree / "user/images/zz")
    (series / "im999.dcm").write_bytes(b"exported report, not an image" * 10)
    expect_failure(tree, capsys, "user/images/zz/im999.dcm", "not a DICOM file")


def test_dicom_series_with_a_file_without_pixels(tree, capsys):
    """Cause 1: a DICOM file in the series that holds no image (a report, a presentation state)."""
    series = _series(tree / "user/images/zz")
    from pydicom import dcmread
    ds = dcmread(series / "im005.dcm")
    del ds.PixelData
    ds.save_as(series / "im005.dcm")
    expect_failure(tree, capsys, "user/images/zz/im005.dcm", "no pixel data")


def test_dicom_series_with_a_slice_without_instance_number_or_position(tree, capsys):
    """Cause 1: before the fix MONAI skipped the file with a warning: a volume one slice short, exit 0."""
    _series(tree / "user/images/zz", overrides={7: {"instance": None, "z": None}})
    expect_failure(tree, capsys, "user/images/zz/im007.dcm", "InstanceNumber")


def test_dicom_series_mixing_two_series(tree, capsys):
    """Cause 1: which files form a series is decided by SeriesInstanceUID, not by the folder."""
    _series(tree / "user/images/zz", overrides={3: {"series_uid": "1.2.826.0.1.3680043.8.498.999"}})
    expect_failure(tree, capsys, "user/images/zz/im003.dcm", "SeriesInstanceUID")


def test_dicom_series_with_a_repeated_instance_number(tree, capsys):
    """Cause 1: a slice exported twice into the series (same InstanceNumber and position)."""
    _series(tree / "user/images/zz", overrides={9: {"instance": 9, "z": 8.0}})
    expect_failure(tree, capsys, "user/images/zz/im009.dcm", "same InstanceNumber")


def test_dicom_series_ordered_by_position_without_instance_numbers(workdir, capsys):
    """Cause 1, valid case: a series without InstanceNumber but with positions is read whole, in position order."""
    from src.data.io import load_volume
    series = workdir / "s"
    series.mkdir()
    for k in range(4):  # written in reverse order of position
        write_dicom(series / f"f{k}.dcm", np.full((8, 6), 10 * k, np.uint16), instance=None, z=float(4 - k))
    vol = load_volume(series)
    assert vol.shape == (6, 8, 4)
    assert [vol[0, 0, k] for k in range(4)] == [30.0, 20.0, 10.0, 0.0]


# ------------------------------------------------------------------ labels


def test_label_shape_mismatch(labelled, capsys):
    write_nifti(labelled / "user/labels/head0.nii.gz", np.zeros((40, 44, 30), np.uint8))
    expect_failure(labelled, capsys, "user/labels/head0.nii.gz", "does not match")


def test_label_map_on_another_voxel_grid_is_refused(labelled, capsys):
    # Was exit 0: a label map of the right shape but resampled to 1.2 mm voxels (the image's are 1 mm) was sliced
    # beside the image and its labels put on other anatomy.
    labels = synthetic_head(SHAPE)[1]
    nib.Nifti1Image(labels, np.diag([1.0, 1.0, 1.2, 1.0])).to_filename(str(labelled / "user/labels/head0.nii.gz"))
    expect_failure(labelled, capsys, "user/labels/head0.nii.gz", "1 x 1 x 1.2 mm", "user/images/head0.nii.gz",
                   "voxel grid")


def test_label_map_stored_along_other_axes_is_read_on_its_images_grid(labelled, capsys):
    # Valid: the same grid written with its axes flipped (another orientation in the file's affine). Both are
    # loaded in one orientation (as_closest_canonical), so the labels land where they were drawn.
    image, labels = synthetic_head(SHAPE)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1  # voxel i of the flipped file is voxel SHAPE[0]-1-i of the image: the same place
    nib.Nifti1Image(labels[::-1].copy(), flip).to_filename(str(labelled / "user/labels/head0.nii.gz"))
    prepared = ("data/prepared/sr", "data/prepared/sim2real")
    before = snapshot(labelled, *prepared)
    rc, err = run_prepare(labelled, capsys)
    assert rc == 0, err
    assert snapshot(labelled, *prepared) == before, "the flipped file's labels must give the same prepared arrays"
    assert leftovers(labelled) == []


def test_non_integer_labels(labelled, capsys):
    labels = synthetic_head(SHAPE)[1].astype(np.float32)
    labels[10, 10, 10] = 1.5
    write_nifti(labelled / "user/labels/head0.nii.gz", labels)
    expect_failure(labelled, capsys, "user/labels/head0.nii.gz", "non-integer")


def test_label_values_out_of_range(labelled, capsys):
    labels = synthetic_head(SHAPE)[1]
    labels[10, 10, 10] = 7
    write_nifti(labelled / "user/labels/head0.nii.gz", labels)
    expect_failure(labelled, capsys, "user/labels/head0.nii.gz", "integers 0..3")


def test_image_without_label_map(labelled, capsys):
    write_nifti(labelled / "user/images/zz.nii.gz", synthetic_head(SHAPE, seed=1)[0])
    expect_failure(labelled, capsys, "user/images/zz.nii.gz", "no label map")


def test_sim_images_without_sim_labels(labelled, capsys):
    (labelled / "user/sim").mkdir()
    write_nifti(labelled / "user/sim/phantom.nii.gz", synthetic_head(SHAPE, seed=2)[0])
    expect_failure(labelled, capsys, "user/sim_labels", "folder not found")


# ------------------------------------------------------------------ leakage across splits (cause 9)


def _heads(root: Path, n: int = 4) -> list[Path]:
    """n different heads (no labels) under root/user/images, named so that sorting keeps their order."""
    shutil.rmtree(root / "user", ignore_errors=True)
    (root / "user/images").mkdir(parents=True)
    return [write_nifti(root / f"user/images/head{i}.nii.gz", synthetic_head(SHAPE, seed=10 + i)[0]) for i in range(n)]


def _split_of(n: int, fractions=None) -> dict[str, list[int]]:
    raw = base_params()
    split = volume_splits(n, fractions or raw["data"]["split_fractions"], raw["seed"], raw["data"]["sim_fraction"])
    return {"train": split.train, "val": split.val, "test": split.test}


@pytest.mark.parametrize("copy", ["exact", "near", "mirror"])
def test_test_volume_copying_a_train_volume_fails(tree, capsys, copy):
    """Cause 9: a series exported twice (exact), re-exported with rounding noise (near), or mirrored left-right."""
    paths = _heads(tree)
    split = _split_of(len(paths))
    train, test = paths[split["train"][0]], paths[split["test"][0]]
    image = np.asarray(nib.load(train).dataobj, dtype=np.float32)
    if copy == "near":
        image = np.round(image * 1.7) + np.random.default_rng(0).normal(0, 0.3, image.shape).astype(np.float32)
    elif copy == "mirror":
        image = image[::-1].copy()
    write_nifti(test, image)
    err = expect_failure(tree, capsys, str(test.relative_to(tree)), str(train.relative_to(tree)), "data.leakage")
    assert "test" in err and "train" in err


def test_leakage_drop_mode_removes_the_copies_and_records_them(tree, capsys):
    """Cause 9, data.leakage: drop: the test copies are dropped, the check and what it dropped are in the manifest."""
    fractions = [0.4, 0.2, 0.4]
    paths = _heads(tree, n=6)
    split = _split_of(len(paths), fractions)
    assert len(split["test"]) == 2, split  # one test volume is a copy, the other must stay
    train_path = paths[split["train"][0]]
    write_nifti(paths[split["test"][0]], np.asarray(nib.load(train_path).dataobj, dtype=np.float32))
    rc, err = run_prepare(tree, capsys, leakage="drop", split_fractions=fractions)
    assert rc == 0, err
    check = json.loads((tree / "data/prepared/manifest.json").read_text())["leakage"]
    assert check["action"] == "drop" and check["duplicates"]["test~train"] > 0, check
    assert check["dropped"]["test"], check
    from src.data.leakage import find_duplicates
    sets = {s: np.load(tree / f"data/prepared/sr/{s}/hr.npy") for s in ("train", "val", "test")}
    assert len(sets["test"]) > 0 and not find_duplicates(sets["test"], sets["train"], "test", "train")
    assert leftovers(tree) == []


def test_symmetric_template_sliced_sagittally_has_no_twins_across_splits(workdir, capsys):
    """Cause 9: the MNI152 2009a symmetric template with data.axes [0]: slice x is slice -x, so val and test
    slabs were made of each other's twins. The split now uses one hemisphere and the check finds nothing."""
    template.copy_template(Path("data/raw/mni152"))
    rc, err = run_prepare(workdir, capsys, source="mni152", axes=[0], image_size=32, min_foreground=0.2, split_gap=3)
    assert rc == 0, err
    from src.data.leakage import find_duplicates
    sets = {s: np.load(workdir / f"data/prepared/sr/{s}/hr.npy") for s in ("train", "val", "test")}
    for held_out, other in (("test", "train"), ("test", "val"), ("val", "train")):
        assert not find_duplicates(sets[held_out], sets[other], held_out, other), (held_out, other)
    manifest = json.loads((workdir / "data/prepared/manifest.json").read_text())
    assert manifest["leakage"]["duplicates"] == {"test~train": 0, "test~val": 0, "val~train": 0}
    assert "hemisphere" in json.dumps(manifest["splits"])


# ------------------------------------------------------------------ staging folders (cause 8)


def test_staging_folders_of_a_killed_prepare_are_swept_at_the_start(tree, capsys):
    """Cause 8: a kill -9 of prepare leaves its staging folders; the next run sweeps them, even when it fails."""
    before = snapshot(tree, *OUTPUTS)
    for stray in ("data/.prepared-tmp-k1ll3d", "data/prepared/.sr-tmp-4000000-x", "data/prepared/.sim2real-tmp-abc",
                  "pipeline/.prepare-tmp-zz9"):
        (tree / stray).mkdir(parents=True)
        (tree / stray / "hr.npy").write_bytes(b"half written")
    (tree / "user/images/notes.txt").write_text("makes this run fail")
    rc, err = run_prepare(tree, capsys)
    assert rc == 1 and "user/images/notes.txt" in err, err
    assert snapshot(tree, *OUTPUTS) == before and leftovers(tree) == []
    (tree / "user/images/notes.txt").unlink()
    (tree / "data/prepared/.sr-tmp-abc").mkdir()
    rc, err = run_prepare(tree, capsys)
    assert rc == 0, err
    assert leftovers(tree) == []


def test_prepare_run_directly_keeps_the_files_it_does_not_own(tree):
    """Cause 8: `python -m src.prepare` outside DVC once deleted DVC's data/prepared/.gitignore."""
    gitignore = tree / "data/prepared/.gitignore"
    gitignore.write_text("/sr\n/sim2real\n/manifest.json\n")
    (tree / "data/prepared/README.txt").write_text("a user's note")
    params = write_params(tree, base_params())
    result = subprocess.run([sys.executable, "-m", "src.prepare", "--params", str(params)], cwd=tree, env=stage_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert gitignore.read_text() == "/sr\n/sim2real\n/manifest.json\n"
    assert (tree / "data/prepared/README.txt").read_text() == "a user's note"
    assert leftovers(tree) == []
