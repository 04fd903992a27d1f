"""Tampered prepared data: arrays of another layout, a meta.json or manifest.json a stage cannot read, and the
sim-to-real stages on SR-only data. Each is refused where it is read (src/data/prepared.py: `LAYOUT`,
`META_KEYS`, `NO_SIM2REAL`; src/pretrained.py), once for every stage, with one `error: <stage>: <file>: ...`
line, exit 1, the previous outputs byte-identical and nothing left over.

Before (each case run against the readers of the previous commit): an image without its channel axis or labels of
another H x W ended in albumentations' "Height and Width of image, mask or masks should be equal", naming no file;
an SR naive of another size in a torch `stack` RuntimeError traceback; int16 images were cast to float and trained
on; a real_slice_index of another length went unnoticed (exit 0); a meta.json or weights manifest that is not JSON
gave a bare "Expecting value: line 1 column N", naming no file; a missing key or a list for an object a KeyError or
TypeError traceback; and on SR-only data (no labels/, a supported mode) every sim-to-real stage advised
`dvc repro prepare`, which writes the same empty sim2real set again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from faults_helpers import last_line, leftovers, s2r_tree, snapshot, weights_manifest, write_params

from src import (baselines, evaluate_sim2real, evaluate_sr, prepare, train_cyclegan, train_segmenter, train_sr,
                 train_sr_psnr)
from tests.data.datatest_helpers import base_params, synthetic_head, write_nifti

pytestmark = pytest.mark.faults

STAGES = {"train_segmenter": (train_segmenter.main, ()),
          "train_cyclegan": (train_cyclegan.main, ("--input", "classical")),
          "baselines": (baselines.main, ()), "evaluate_sim2real": (evaluate_sim2real.main, ()),
          "train_sr": (train_sr.main, ()), "evaluate_sr": (evaluate_sr.main, ())}
S2R, SR = Path("data/prepared/sim2real"), Path("data/prepared/sr")
PROTECTED = ("data", "pipeline")  # every input and every previous output: byte-identical after a refusal
REBUILD_PREPARED, REBUILD_WEIGHTS = "`dvc repro prepare`", "`dvc repro -f weights`"


def previous_outputs(root: Path) -> None:
    """Placeholder bytes standing for a previous run's outputs of the stages that have none in the tree yet."""
    for rel in ("pipeline/train_cyclegan/classical/g_sim2real.pt", "pipeline/baselines/baselines.json",
                "pipeline/evaluate_sim2real/part.json", "pipeline/evaluate_sr/part.json"):
        path = root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"previous run of " + rel.encode())


def run_refused(root: Path, capsys, stage: str, *culprits: str) -> str:
    """Run `stage` in `root`: exit 1, one `error: <stage>: ` line naming every culprit, every input and previous
    output byte-identical, no leftovers. Returns the error."""
    before = snapshot(root, *PROTECTED)
    main, args = STAGES[stage]
    rc = main(["--params", "params.yaml", *args])
    stderr = capsys.readouterr().err
    err = last_line(stderr)
    assert rc == 1, err
    assert err.startswith(f"error: {stage}: ") and "Traceback" not in stderr, stderr
    for culprit in culprits:
        assert culprit in err, f"{culprit!r} not in {err!r}"
    assert snapshot(root, *PROTECTED) == before
    assert leftovers(root) == []
    return err


@pytest.fixture
def s2r(tmp_path, monkeypatch):
    """Prepared sim-to-real data, a frozen segmenter and placeholders of the other outputs, as the working directory."""
    root = s2r_tree(tmp_path)
    previous_outputs(root)
    monkeypatch.chdir(root)
    return root


# ------------------------------------------------------------------ class 1: arrays of another layout


def _sim_without_channel_axis(split: Path) -> str:
    np.save(split / "sim.npy", np.load(split / "sim.npy")[:, 0])
    return "sim.npy: expected 'sim' as float (M, 1, H, W), 4 axes, found (6, 32, 32) (no channel axis)"


def _labels_of_another_size(split: Path) -> str:
    np.save(split / "sim_labels.npy", np.load(split / "sim_labels.npy")[:, :, :28])
    return ("sim_labels.npy: expected 'sim_labels' as integer (M, H, W) = (6, 32, 32) (sizes as in sim.npy), "
            "found (6, 32, 28)")


def _real_slice_index_of_another_length(split: Path) -> str:
    # Read by no stage today, yet part of the split: a split prepare did not write whole is refused by all.
    np.save(split / "real_slice_index.npy", np.arange(5, dtype=np.int64))
    return "real_slice_index.npy: expected 'real_slice_index' as integer (K,) = (6,) (sizes as in real.npy), found (5,)"


def _int_images(split: Path) -> str:
    np.save(split / "real.npy", (np.load(split / "real.npy") * 1000).astype(np.int16))
    return "real.npy: expected 'real' as float (K, 1, H, W), found dtype int16 (6, 1, 32, 32)"


def _object_images(split: Path) -> str:
    np.save(split / "sim.npy", np.load(split / "sim.npy").astype(object), allow_pickle=True)
    return "sim.npy: expected 'sim' as float (M, 1, H, W), found dtype object (6, 1, 32, 32)"


@pytest.mark.parametrize("tamper, stage", [
    (_sim_without_channel_axis, "train_segmenter"),
    (_labels_of_another_size, "train_segmenter"),
    (_real_slice_index_of_another_length, "train_cyclegan"),
    (_int_images, "baselines"),
    (_object_images, "train_segmenter"),
], ids=["image_without_channel_axis", "labels_of_another_size", "real_slice_index_of_another_length",
        "int_images", "object_images"])
def test_a_sim2real_array_of_another_layout_is_named_with_what_was_expected(s2r, capsys, tamper, stage):
    message = tamper(s2r / S2R / "train")
    run_refused(s2r, capsys, stage, str(S2R / "train" / message), REBUILD_PREPARED)


def test_an_sr_array_of_another_size_is_named_by_train_sr(sr_run, capsys):
    np.save(SR / "train/naive.npy", np.load(SR / "train/naive.npy")[..., :28])
    run_refused(sr_run, capsys, "train_sr",
                f"{SR / 'train/naive.npy'}: expected 'naive' as float (N, 1, H, W) = (6, 1, 32, 32) (sizes as in "
                f"hr.npy), found (6, 1, 32, 28)", REBUILD_PREPARED)


# ------------------------------------------------------------------ class 2: meta.json and manifest.json


def _weights_entry(root: Path, name: str, entry: dict) -> None:
    path = root / "pipeline/weights/manifest.json"
    manifest = json.loads(path.read_text())
    manifest[name] = entry
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("file, content, stage, culprit, rebuild", [
    (S2R / "meta.json", "{\"written\": true, \"class_names\": [", "train_segmenter", "not valid JSON",
     REBUILD_PREPARED),
    (S2R / "meta.json", "[\"background\", \"csf\", \"gm\", \"wm\"]", "baselines", "not a JSON object",
     REBUILD_PREPARED),
    (S2R / "meta.json", "{\"written\": true}", "train_cyclegan", "lacks the key 'class_names'", REBUILD_PREPARED),
    (S2R / "meta.json", "{\"written\": true, \"class_names\": [\"background\", \"tissue\"]}", "evaluate_sim2real",
     "'class_names' must be the classes", REBUILD_PREPARED),
    (Path("pipeline/weights/manifest.json"), "\x00\x00", "train_segmenter", "not valid JSON", REBUILD_WEIGHTS),
    (Path("pipeline/weights/manifest.json"), {"status": "available", "description": "resnet18"}, "train_segmenter",
     "the available entry 'resnet18' lacks the key 'file'", REBUILD_WEIGHTS),
], ids=["meta_not_json", "meta_not_an_object", "meta_without_class_names", "meta_with_other_classes",
        "weights_manifest_not_json", "weights_entry_without_file"])
def test_a_json_file_the_stage_cannot_read_is_named_with_the_key(s2r, capsys, file, content, stage, culprit, rebuild):
    if isinstance(content, dict):
        _weights_entry(s2r, "resnet18", content)
    else:
        (s2r / file).write_text(content)
    run_refused(s2r, capsys, stage, f"{file}: ", culprit, rebuild)


@pytest.mark.parametrize("meta, stage, culprit", [
    ({"degradation": "kspace"}, "train_sr", "lacks the key 'scale'"),
    ({"scale": "4", "degradation": "kspace"}, "evaluate_sr", "'scale' must be a positive integer, found \"4\""),
    (4, "evaluate_sr", "holds 4, not a JSON object"),
], ids=["without_scale", "scale_as_a_string", "a_number"])
def test_an_sr_meta_the_stage_cannot_read_is_named_with_the_key(sr_run, capsys, meta, stage, culprit):
    (SR / "meta.json").write_text(json.dumps(meta))
    run_refused(sr_run, capsys, stage, f"{SR / 'meta.json'}: ", culprit, REBUILD_PREPARED)


def test_an_sr_meta_whose_scale_disagrees_with_the_arrays_is_refused_before_any_training(sr_run, capsys):
    # Lost data (issue 23): a meta.json saying x2 for x4 arrays let train_sr train and rewrite g_psnr.pt,
    # g_gan.pt and last.pt before failing. The consistency check now runs first; every output stays as it was.
    (SR / "meta.json").write_text(json.dumps({"scale": 2, "degradation": "kspace"}))
    run_refused(sr_run, capsys, "train_sr", "x2", "(8, 8)", "(32, 32)", REBUILD_PREPARED)


def test_a_weights_entry_without_its_file_is_named_by_train_sr(sr_run, capsys):
    _weights_entry(sr_run, "vgg19", {"status": "available", "description": "vgg19"})
    run_refused(sr_run, capsys, "train_sr", "pipeline/weights/manifest.json: the available entry 'vgg19' lacks the "
                                            "key 'file'", REBUILD_WEIGHTS)


# ------------------------------------------------------------------ class 3: sim-to-real stages on SR-only data


@pytest.fixture(scope="module")
def sr_only_prepared(tmp_path_factory):
    """prepare's outputs for a user folder of one head without labels/ (SR only), with params sized for seconds,
    an offline weights manifest and placeholders of every later stage's outputs."""
    root = tmp_path_factory.mktemp("sr_only")
    (root / "user/images").mkdir(parents=True)
    write_nifti(root / "user/images/head0.nii.gz", synthetic_head((40, 44, 36))[0])
    raw = base_params()
    raw["train"].update(device="cpu", amp=False)
    raw["train"]["sr"].update(crop_size=16, batch_size=2, g_blocks=1, g_channels=4, d_channels=4, d_layers=2,
                              psnr_steps=4, gan_steps=2, log_every=2, sample_every=1000,
                              checkpoint_every=2,
                              vgg_layers=["relu1_1"])
    raw["evaluate"].update(device="cpu")
    write_params(root, raw)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert prepare.main(["--params", "params.yaml"]) == 0
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in (root / S2R).iterdir()) == ["meta.json"]  # what prepare writes without labels
    weights_manifest(root)
    (root / "pipeline/train_segmenter").mkdir(parents=True)
    (root / "pipeline/train_segmenter/segmenter.pt").write_bytes(b"previous run of train_segmenter")
    previous_outputs(root)
    return root


@pytest.fixture
def sr_only(sr_only_prepared, tmp_path, monkeypatch):
    root = tmp_path / "w"
    shutil.copytree(sr_only_prepared, root)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("stage", ["train_segmenter", "train_cyclegan", "baselines", "evaluate_sim2real"])
def test_sim2real_stages_on_sr_only_data_say_why_there_is_no_split_and_what_applies(sr_only, capsys, stage):
    # Was: `data/prepared/sim2real/train: prepared split not found (run `dvc repro prepare`)`, and that run
    # writes the same empty set again.
    err = run_refused(sr_only, capsys, stage, f"{S2R}: the prepared data has no sim-to-real split",
                      "no tissue labels", "labels/", "`dvc repro train_sr`")
    assert "dvc repro prepare" not in err, err


def test_train_sr_named_by_that_message_runs_on_sr_only_data(sr_only):
    # The message's way forward holds: dvc.yaml's train_sr (and train_sr_psnr before it) read data/prepared/sr only.
    assert train_sr_psnr.main(["--params", "params.yaml"]) == 0 and train_sr.main(["--params", "params.yaml"]) == 0
    assert (sr_only / "pipeline/train_sr_psnr/g_psnr.pt").is_file() and (sr_only / "pipeline/train_sr/g_gan.pt").is_file()
    assert leftovers(sr_only) == []
