"""Sharded prepare (issue 22): two ordinary prepare runs on disjoint subjects, merged by src/merge_shards.py."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from datatest_helpers import base_params, synthetic_head, write_nifti

from src import merge_shards, prepare
from src.data.sets import SIM2REAL_KEYS
from src.data.splits import SPLITS
from src.merge_shards import SR_KEYS

SHAPE = (40, 44, 36)


def _shard(root: Path, seeds: list[int], monkeypatch, capsys, **data) -> Path:
    """A shard: its own working directory with the subjects `seeds` and params.yaml; prepare run there."""
    for kind in ("images", "labels"):
        (root / "user" / kind).mkdir(parents=True)
    for seed in seeds:
        image, labels = synthetic_head(SHAPE, seed=seed)
        write_nifti(root / f"user/images/head{seed}.nii.gz", image * (1 + 0.1 * seed))
        write_nifti(root / f"user/labels/head{seed}.nii.gz", labels)
    raw = base_params()
    raw["data"].update({"workers": 1, **data})  # one process: a pool's start-up would dominate these tiny runs
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(root)
    rc = prepare.main(["--params", "params.yaml"])
    assert rc == 0, capsys.readouterr().err
    return root / "data/prepared"


def _merge(tmp_path, monkeypatch, capsys, *shards: Path) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    rc = merge_shards.main(["--shards", *map(str, shards), "--out", "merged"])
    lines = capsys.readouterr().err.strip().splitlines()
    return rc, lines[-1] if lines else ""


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*-tmp-*")] + [p for p in root.rglob(".*-old")]


def test_two_shards_merge_into_the_concatenation_of_their_splits(tmp_path, monkeypatch, capsys):
    a = _shard(tmp_path / "shard0", [0, 1, 2], monkeypatch, capsys)
    b = _shard(tmp_path / "shard1", [3, 4, 5], monkeypatch, capsys)
    rc, err = _merge(tmp_path, monkeypatch, capsys, a, b)
    assert rc == 0, err
    merged = tmp_path / "merged"
    for name, keys in (("sr", SR_KEYS), ("sim2real", SIM2REAL_KEYS)):
        for split in SPLITS:
            for key in keys:
                first, second = (np.load(shard / name / split / f"{key}.npy") for shard in (a, b))
                if key in ("volume_index", "real_volume_index"):
                    second = second + 3  # shard1's volumes come after shard0's three
                np.testing.assert_array_equal(np.load(merged / name / split / f"{key}.npy"),
                                              np.concatenate([first, second]), err_msg=f"{name}/{split}/{key}")
    meta = json.loads((merged / "sr/meta.json").read_text())
    shard_counts = [json.loads((s / "sr/meta.json").read_text())["counts"] for s in (a, b)]
    assert meta["counts"] == {s: shard_counts[0][s] + shard_counts[1][s] for s in SPLITS}
    manifest = json.loads((merged / "manifest.json").read_text())
    assert [s["volume_offset"] for s in manifest["shards"]] == [0, 3]
    assert manifest["leakage"]["duplicates"] == {"test~train": 0, "test~val": 0, "val~train": 0}
    assert _leftovers(tmp_path) == []


def test_a_subject_in_two_shards_is_refused_naming_both_files(tmp_path, monkeypatch, capsys):
    """Subject 2 exported into both shards: each shard alone is clean, the merge sees its held-out slices copy
    the other shard's. Nothing is written."""
    a = _shard(tmp_path / "shard0", [0, 1, 2], monkeypatch, capsys)
    b = _shard(tmp_path / "shard1", [2, 3, 4], monkeypatch, capsys)
    rc, err = _merge(tmp_path, monkeypatch, capsys, a, b)
    assert rc == 1 and err.startswith("error: merge_shards: ")
    assert "head2.nii.gz" in err and "copies of slices in another split" in err
    assert not (tmp_path / "merged" / "sr").exists() and not (tmp_path / "merged" / "manifest.json").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("edit, key", [({"split_gap": 2}, "data.split_gap"), ({"seed": 7}, "seed")])
def test_shards_with_other_params_are_refused_naming_the_key(tmp_path, monkeypatch, capsys, edit, key):
    a = _shard(tmp_path / "shard0", [0, 1, 2], monkeypatch, capsys)
    b = tmp_path / "shard1"
    if "seed" in edit:
        b = _shard(b, [3, 4, 5], monkeypatch, capsys)
        manifest = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**manifest, "seed": edit["seed"]}))
    else:
        b = _shard(b, [3, 4, 5], monkeypatch, capsys, **edit)
    rc, err = _merge(tmp_path, monkeypatch, capsys, a, b)
    assert rc == 1 and str(b) in err and f"({key})" in err
    assert not (tmp_path / "merged").exists() or not any((tmp_path / "merged").iterdir())
