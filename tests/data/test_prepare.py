"""Stage smoke tests: `template` and `prepare` on tiny generated inputs in a temporary working directory."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datatest_helpers import REPO, base_params, synthetic_head, write_dicom, write_image, write_nifti

from src import prepare, template

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------ inputs


def make_nifti_folder(root: Path, n_volumes: int = 1, labels: bool = True, shape=(40, 44, 36)) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    if labels:
        (root / "labels").mkdir(exist_ok=True)
    for i in range(n_volumes):
        image, lab = synthetic_head(shape, seed=i)
        write_nifti(root / "images" / f"head{i}.nii.gz", image * (1 + 0.3 * i))
        if labels:
            write_nifti(root / "labels" / f"head{i}.nii.gz", lab)
    return root


def _disc_slice(size=48, seed=0):
    """A 2-D 'head' slice (rows, cols): uint16 image and uint8 labels."""
    image, labels = synthetic_head((size, size + 4, 3), seed=seed)
    return (image[:, :, 1].T * 400).astype(np.uint16), labels[:, :, 1].T.copy()


def run_prepare(params_path: Path, capsys) -> tuple[int, str]:
    """Run the stage in-process; returns (exit code, last line of stderr: the error, after any progress bar)."""
    rc = prepare.main(["--params", str(params_path)])
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    return rc, lines[-1] if lines else ""


def load(split_dir: Path) -> dict:
    """Every array of one prepared split folder (<key>.npy), read directly with numpy."""
    return {p.stem: np.load(p) for p in split_dir.glob("*.npy")}


def assert_no_partial_output(workdir: Path) -> None:
    assert not (workdir / "data" / "prepared").exists()
    assert not (workdir / "pipeline" / "prepare").exists()
    leftovers = [p for p in workdir.rglob(".*-tmp-*")] + [p for p in workdir.rglob(".*-old")]
    assert not leftovers, leftovers


def check_outputs(workdir: Path, image_size: int, scale: int, sim2real: bool = True) -> dict:
    """Shapes, ranges, background, and counts against the split manifest; returns the manifest."""
    out = workdir / "data" / "prepared"
    manifest = json.loads((out / "manifest.json").read_text())
    sr_meta = json.loads((out / "sr" / "meta.json").read_text())
    assert sr_meta["scale"] == scale and sr_meta["image_size"] == image_size and sr_meta["background"] == -1.0
    stacks = manifest["splits"]["stacks"]
    for split in SPLITS:
        sr = load(out / "sr" / split)
        n = len(sr["hr"])
        assert n == sum(len(s[split]) for s in stacks) == sr_meta["counts"][split] > 0
        assert sr["hr"].shape == (n, 1, image_size, image_size) and sr["hr"].dtype == np.float32
        assert sr["lr"].shape == (n, 1, image_size // scale, image_size // scale)
        assert sr["naive"].shape == sr["hr"].shape
        assert sr["hr"].min() == -1.0 and sr["hr"].max() <= 1.0
        assert np.all(sr["hr"][:, :, 0, :] == -1.0)  # the crop margin is background
        assert np.isfinite(sr["lr"]).all() and np.isfinite(sr["naive"]).all()
        assert sr["slice_index"].shape == (n,)
    assert (workdir / "pipeline" / "prepare" / "preview.png").read_bytes()[:4] == b"\x89PNG"
    s2r_meta = json.loads((out / "sim2real" / "meta.json").read_text())
    assert s2r_meta["written"] is sim2real
    if not sim2real:
        assert sorted(p.name for p in (out / "sim2real").iterdir()) == ["meta.json"]
        assert manifest["outputs"]["sim2real"]["written"] is False
        return manifest
    assert s2r_meta["class_names"] == ["background", "csf", "gm", "wm"]
    for split in SPLITS:
        d = load(out / "sim2real" / split)
        for img, lab in (("sim", "sim_labels"), ("real", "real_labels")):
            assert d[img].shape == (len(d[lab]), 1, image_size, image_size) and d[lab].dtype == np.uint8
            assert d[img].min() >= -1 and d[img].max() <= 1
            assert np.all(d[img][:, 0][d[lab] == 0] == -1.0)
            assert set(np.unique(d[lab])) <= {0, 1, 2, 3}
        if split == "train" and s2r_meta["sim_source"] == "simulator":
            variants = manifest["data"]["sim"]["variants_per_slice"]
            assert len(d["sim"]) == variants * sum(len(s["train_sim"]) for s in stacks)
            assert len(d["real"]) == sum(len(s["train_real"]) for s in stacks)
        elif s2r_meta["sim_source"] == "simulator":
            np.testing.assert_array_equal(d["sim_labels"], d["real_labels"])  # val/test aligned
            sr = load(out / "sr" / split)
            np.testing.assert_array_equal(d["real"], sr["hr"])
    return manifest


# ------------------------------------------------------------------ template


def test_template_copies_the_three_files(workdir, capsys):
    assert template.main([]) == 0
    out = workdir / "data" / "raw" / "mni152"
    assert sorted(p.name for p in out.iterdir()) == ["gm.nii.gz", "t1.nii.gz", "wm.nii.gz"]
    assert sorted(p.name for p in (workdir / "data" / "raw").iterdir()) == ["mni152"]  # no temp dirs left
    assert template.main([]) == 0  # replaces its previous output
    assert sorted(p.name for p in out.iterdir()) == ["gm.nii.gz", "t1.nii.gz", "wm.nii.gz"]


def test_prepare_on_the_mni152_template(workdir, write_params, capsys):
    template.copy_template(Path("data/raw/mni152"))
    rc, err = run_prepare(write_params(source="mni152", image_size=32, min_foreground=0.2, split_gap=3), capsys)
    assert rc == 0, err
    manifest = check_outputs(workdir, 32, 4)
    assert manifest["splits"]["mode"] == "slab" and manifest["splits"]["gap"] == 3
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["t1.nii.gz", "gm.nii.gz", "wm.nii.gz"]
    test = load(workdir / "data/prepared/sim2real/test")
    assert set(np.unique(test["real_labels"])) == {0, 1, 2, 3}


# ------------------------------------------------------------------ prepare on folders


def test_one_nifti_volume_with_labels(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user")
    rc, err = run_prepare(write_params(), capsys)
    assert rc == 0, err
    manifest = check_outputs(workdir, 32, 4)
    (stack,) = manifest["splits"]["stacks"]
    gap = manifest["splits"]["gap"]
    parts = {k: stack[k] for k in ("train", "val", "test")}
    for a in parts:
        for b in parts:
            if a < b:
                assert min(abs(i - j) for i in parts[a] for j in parts[b]) > gap
    assert min(abs(i - j) for i in stack["train_sim"] for j in stack["train_real"]) > gap
    assert manifest["inputs"][0]["path"] == "user/images/head0.nii.gz" and len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["data"]["folder"] == "user" and manifest["wall_time_s"] > 0


def test_outputs_are_deterministic(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user")
    params = write_params(lr_noise_std=0.01)
    assert run_prepare(params, capsys)[0] == 0
    first = {f: load(workdir / "data/prepared" / f) for f in ("sr/train", "sim2real/train")}
    assert run_prepare(params, capsys)[0] == 0
    for f, arrays in first.items():
        again = load(workdir / "data/prepared" / f)
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], again[key])


def test_several_volumes_and_axes_split_by_volume(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user", n_volumes=5)
    rc, err = run_prepare(write_params(axes=[0, 2]), capsys)
    assert rc == 0, err
    manifest = check_outputs(workdir, 32, 4)
    volumes = manifest["splits"]["volumes"]
    assert manifest["splits"]["mode"] == "volume" and len(manifest["splits"]["stacks"]) == 10
    assert sorted(volumes["train"] + volumes["val"] + volumes["test"]) == list(range(5))
    assert not set(volumes["train_sim"]) & set(volumes["train_real"])
    seen = {s: set(load(workdir / f"data/prepared/sr/{s}")["volume_index"].tolist()) for s in SPLITS}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


def test_three_volumes_split_the_single_train_volume_into_sub_slabs(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user", n_volumes=3)
    rc, err = run_prepare(write_params(), capsys)
    assert rc == 0, err
    manifest = check_outputs(workdir, 32, 4)
    (train_stack,) = [s for s in manifest["splits"]["stacks"] if s["train"]]
    assert min(abs(i - j) for i in train_stack["train_sim"] for j in train_stack["train_real"]) > 1


def test_16bit_pngs_without_labels_give_sr_only(workdir, write_params, capsys, caplog):
    (workdir / "user" / "images").mkdir(parents=True)
    for i in range(5):
        write_image(workdir / "user" / "images" / f"slice{i}.png", _disc_slice(seed=i)[0])
    caplog.set_level(logging.INFO, logger="stage")
    assert prepare.main(["--params", str(write_params())]) == 0
    assert "sim2real = NOT written: no label maps" in caplog.text
    manifest = check_outputs(workdir, 32, 4, sim2real=False)
    assert "no label maps" in manifest["outputs"]["sim2real"]["reason"]


def test_pngs_with_png_labels_and_a_tiff(workdir, write_params, capsys):
    for sub in ("images", "labels"):
        (workdir / "user" / sub).mkdir(parents=True)
    for i in range(4):
        image, labels = _disc_slice(seed=i)
        write_image(workdir / "user" / "images" / f"s{i}{'.tif' if i == 0 else '.png'}", image)
        write_image(workdir / "user" / "labels" / f"s{i}.png", labels)
    rc, err = run_prepare(write_params(), capsys)
    assert rc == 0, err
    check_outputs(workdir, 32, 4)


def test_dicom_series_folders(workdir, write_params, capsys):
    images = workdir / "user" / "images"
    for v in range(3):
        head, _ = synthetic_head((24, 40, 40), seed=v)  # written as 24 slices of 40 x 40
        series = images / f"patient{v}"
        series.mkdir(parents=True)
        for k in range(head.shape[0]):
            write_dicom(series / f"im{k:03d}.dcm", (head[k] * 100).astype(np.uint16), instance=k + 1, z=float(k))
    rc, err = run_prepare(write_params(), capsys)
    assert rc == 0, err
    manifest = check_outputs(workdir, 32, 4, sim2real=False)
    assert [v["shape"] for v in manifest["volumes"]] == [[40, 40, 24]] * 3


def test_user_sim_images_replace_the_simulator(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user", n_volumes=1)
    for sub in ("sim", "sim_labels"):
        (workdir / "user" / sub).mkdir()
    image, labels = synthetic_head((40, 44, 36), seed=9)
    write_nifti(workdir / "user" / "sim" / "phantom.nii.gz", image)
    write_nifti(workdir / "user" / "sim_labels" / "phantom.nii.gz", labels)
    rc, err = run_prepare(write_params(), capsys)
    assert rc == 0, err
    check_outputs(workdir, 32, 4)
    meta = json.loads((workdir / "data/prepared/sim2real/meta.json").read_text())
    assert meta["sim_source"] == "user" and meta["val_test_aligned"] is False


# ------------------------------------------------------------------ errors


def _break(workdir: Path, kind: str) -> tuple[dict, str]:
    """Make a dataset with one problem; returns (data param overrides, text the error must contain)."""
    user = workdir / "user"
    if kind == "missing_folder":
        return {"folder": "nowhere"}, "nowhere: folder not found"
    if kind == "empty_folder":
        (user / "images").mkdir(parents=True)
        return {}, "user/images: no images found"
    if kind == "mni_without_template":
        return {"source": "mni152"}, "data/raw/mni152/t1.nii.gz: file not found"
    make_nifti_folder(user, n_volumes=1)
    bad = user / "images" / "zz.nii.gz"
    good = (user / "images" / "head0.nii.gz").read_bytes()
    if kind == "corrupt_nifti":
        bad.write_bytes(b"not a nifti" * 30)
    elif kind == "truncated_nifti":
        bad.write_bytes(good[: len(good) // 2])
    elif kind == "corrupt_dicom":
        bad = user / "images" / "zz.dcm"
        bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    elif kind == "corrupt_png":
        bad = user / "images" / "zz.png"
        png = write_image(workdir / "full.png", _disc_slice()[0]).read_bytes()
        bad.write_bytes(png[:100])
    elif kind == "unsupported_extension":
        bad = user / "images" / "notes.txt"
        bad.write_text("hello")
    elif kind == "nan_voxels":
        image, _ = synthetic_head()
        image[20, 20, 20] = np.nan
        write_nifti(bad, image)
    elif kind == "label_shape_mismatch":
        bad = user / "labels" / "head0.nii.gz"
        write_nifti(bad, np.zeros((40, 44, 30), np.uint8))
    elif kind == "missing_label":
        write_nifti(bad, synthetic_head()[0])
        return {}, "user/images/zz.nii.gz: no label map"
    elif kind == "too_small":
        (user / "labels" / "head0.nii.gz").unlink()
        (user / "labels").rmdir()
        bad = user / "images" / "head0.nii.gz"
        write_nifti(bad, synthetic_head((6, 6, 30))[0])
    elif kind == "sim_without_labels":
        (user / "sim").mkdir()
        write_nifti(user / "sim" / "p.nii.gz", synthetic_head()[0])
        return {}, "user/sim_labels: folder not found"
    elif kind == "wrong_param":
        return {"scale": 3}, "data.scale"
    elif kind == "wrong_param_type":
        return {"image_size": "big"}, "data.image_size"
    elif kind == "one_volume_several_axes":
        return {"axes": [0, 2]}, "data.axes"
    elif kind == "gap_too_large":
        return {"split_gap": 30}, "data.split_gap"
    else:
        raise AssertionError(kind)
    return {}, str(bad.relative_to(workdir))


ERROR_KINDS = ["missing_folder", "empty_folder", "mni_without_template", "corrupt_nifti", "truncated_nifti",
               "corrupt_dicom", "corrupt_png", "unsupported_extension", "nan_voxels", "label_shape_mismatch",
               "missing_label", "too_small", "sim_without_labels", "wrong_param", "wrong_param_type",
               "one_volume_several_axes", "gap_too_large"]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_bad_input_fails_cleanly(workdir, write_params, capsys, kind):
    overrides, expected = _break(workdir, kind)
    rc, err = run_prepare(write_params(**overrides), capsys)
    assert rc == 1
    assert err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err
    assert_no_partial_output(workdir)


def test_failed_run_keeps_previous_outputs(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user")
    assert run_prepare(write_params(), capsys)[0] == 0
    manifest = (workdir / "data/prepared/manifest.json").read_bytes()
    write_nifti(workdir / "user" / "images" / "zz.nii.gz", np.full((40, 44, 36), np.nan, np.float32))
    assert run_prepare(write_params(), capsys)[0] == 1
    assert (workdir / "data/prepared/manifest.json").read_bytes() == manifest
    assert not [p for p in workdir.rglob(".*-tmp-*")]


def test_files_prepare_does_not_own_are_left_alone(workdir, write_params, capsys):
    """DVC writes data/prepared/.gitignore; prepare replaces only sr/, sim2real/ and manifest.json."""
    make_nifti_folder(workdir / "user")
    out = workdir / "data" / "prepared"
    (out / "sr").mkdir(parents=True)
    (out / "sr" / "train").mkdir()
    (out / "sr" / "train" / "stale.npy").write_bytes(b"old")
    (out / ".gitignore").write_text("/sr\n/sim2real\n/manifest.json\n")
    assert run_prepare(write_params(), capsys)[0] == 0
    assert (out / ".gitignore").read_text() == "/sr\n/sim2real\n/manifest.json\n"
    assert not (out / "sr" / "train" / "stale.npy").exists()
    assert sorted(p.name for p in out.iterdir()) == [".gitignore", "manifest.json", "sim2real", "sr"]
    check_outputs(workdir, 32, 4)


def test_every_split_error_names_a_params_key():
    """Each `SplitError(setting, ...)` raised in src/data maps to a real params key in the stage."""
    raised = {m for f in (REPO / "src" / "data").glob("*.py")
              for m in re.findall(r'SplitError\(\s*"(\w+)"', f.read_text())}
    assert raised and raised <= set(prepare.SPLIT_KEYS), raised - set(prepare.SPLIT_KEYS)
    data_keys = {f"data.{key}" for key in base_params()["data"]}
    assert set(prepare.SPLIT_KEYS.values()) <= data_keys, set(prepare.SPLIT_KEYS.values()) - data_keys


def test_cli_exit_code_and_help(workdir, write_params, capsys):
    with pytest.raises(SystemExit) as info:
        prepare.main(["--help"])
    assert info.value.code == 0 and "data/prepared/sr" in capsys.readouterr().out
    params = write_params(scale=3)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "src.prepare", "--params", str(params)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "data.scale" in result.stderr
    assert_no_partial_output(workdir)


def test_one_and_two_workers_write_the_same_bytes(workdir, write_params, capsys):
    """data.workers changes how volumes are read and sliced (a process pool, memory-mapped scratch files), never
    what is written; the pool's scratch folder is gone afterwards."""
    make_nifti_folder(workdir / "user", n_volumes=4)
    written = {}
    for workers in (1, 2):
        rc, err = run_prepare(write_params(workers=workers, lr_noise_std=0.01), capsys)
        assert rc == 0, err
        out = workdir / "data/prepared"
        written[workers] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.npy"))}
        assert not list((workdir / "data").glob(".prepare-scratch*"))
    assert len(written[1]) == 3 * 6 + 3 * 7  # sr: 3 splits x 6 arrays; sim2real: 3 x 7
    assert written[1].keys() == written[2].keys()
    for name in written[1]:
        assert written[1][name] == written[2][name], name


def test_negative_workers_is_refused_naming_the_key(workdir, write_params, capsys):
    make_nifti_folder(workdir / "user")
    rc, err = run_prepare(write_params(workers=-1), capsys)
    assert rc == 1 and "data.workers" in err, err
    assert_no_partial_output(workdir)
