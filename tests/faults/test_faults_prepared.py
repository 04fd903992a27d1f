"""Tampered prepared data (issue 23, class 2): a label outside the classes of meta.json is refused where it is read,
naming the file and the slice, with exit 1 and the previous outputs byte-identical.

Before: train_segmenter died in a raw torch traceback, and the evaluation's Dice counts (one flat bincount over
slice * C + class) silently moved the overflow into the next slice's counts: exit 0 with a wrong number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faults_helpers import last_line, leftovers, s2r_tree, snapshot

from src import baselines, train_segmenter
from src.evaluation.dice import dice_counts

pytestmark = pytest.mark.faults


def tamper(path, row: int, value: int, dtype=None) -> None:
    labels = np.load(path)
    labels = labels.astype(dtype) if dtype is not None else labels.copy()
    labels[row, 3, 5] = value
    np.save(path, labels)


@pytest.mark.parametrize("value", [4, 200])
def test_train_segmenter_refuses_a_label_outside_the_classes(tmp_path, monkeypatch, capsys, value):
    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    labels = root / "data/prepared/sim2real/train/sim_labels.npy"
    tamper(labels, 4, value)
    before = snapshot(root, "pipeline/train_segmenter")
    assert train_segmenter.main(["--params", "params.yaml"]) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: train_segmenter: ") and "sim_labels.npy" in err and "slice 4" in err, err
    assert f"label {value}" in err and "dvc repro prepare" in err, err
    assert snapshot(root, "pipeline/train_segmenter") == before
    assert leftovers(root) == []


def test_evaluation_refuses_a_negative_test_label_before_training_anything(tmp_path, monkeypatch, capsys):
    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    test = root / "data/prepared/sim2real/test"
    (root / "data/prepared/sim2real/val").rename(test)  # s2r_tree writes train and val; the evaluation reads test
    tamper(test / "real_labels.npy", 1, -3, dtype=np.int16)
    assert baselines.main(["--params", "params.yaml"]) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: baselines: ") and "real_labels.npy" in err and "slice 1" in err, err
    assert not (root / "pipeline/baselines").exists()
    assert leftovers(root) == []


def test_dice_counts_refuse_a_label_that_would_spill_into_another_slice():
    # Without the check, slice 0's label 4 (of 4 classes) landed in slice 1's class-0 bin: slice 1's background
    # denominator read 33 instead of 32, exit 0.
    true = torch.zeros(2, 4, 4, dtype=torch.long)
    pred = true.clone()
    pred[0, 0, 0] = 4
    with pytest.raises(ValueError, match=r"predicted labels of slice 0 fall outside the 4 classes \(values \[4\]\)"):
        dice_counts(pred, true, 4)
    true[1, 2, 2] = -1
    with pytest.raises(ValueError, match=r"true labels of slice 1"):
        dice_counts(true.clamp_min(0), true, 4)


@pytest.mark.parametrize("content", ["empty", "not_a_state_dict"])
def test_a_weights_file_the_manifest_calls_available_but_is_broken_is_named(tmp_path, monkeypatch, capsys, content):
    # Was a traceback from deep inside torch (issue 23).
    import json

    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    weights = root / "pipeline/weights"
    broken = weights / "resnet18.pth"
    if content == "empty":
        broken.write_bytes(b"")
    else:
        torch.save([1, 2, 3], broken)
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["resnet18"] = {"status": "available", "file": "resnet18.pth", "description": "resnet18"}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(root, "pipeline/train_segmenter")
    assert train_segmenter.main(["--params", "params.yaml"]) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: train_segmenter: ") and "resnet18.pth" in err and "dvc repro -f weights" in err, err
    assert ("not a readable PyTorch weights file" if content == "empty" else "holds list") in err, err
    assert snapshot(root, "pipeline/train_segmenter") == before
    assert leftovers(root) == []
