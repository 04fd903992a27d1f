"""The lazy prepared-split reader (src/data/prepared.py): memory maps, read-only, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.prepared import load_split, open_split, split_digest

KEYS = ("hr", "lr", "sim_labels")


def write_split(folder: Path, n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """A split written with plain np.save; returns the arrays as written."""
    rng = np.random.default_rng(seed)
    arrays = {"hr": rng.uniform(-1, 1, (n, 1, 16, 16)).astype(np.float32),
              "lr": rng.uniform(-1, 1, (n, 1, 4, 4)).astype(np.float32),
              "sim_labels": rng.integers(0, 4, (n, 16, 16)).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)
    return arrays


def test_open_split_maps_exactly_the_written_arrays(tmp_path):
    written = write_split(tmp_path / "train")
    mapped = open_split(tmp_path / "train", KEYS)
    assert set(mapped) == set(KEYS)
    for key, array in written.items():
        assert isinstance(mapped[key], np.memmap), key  # mapped, not read
        assert mapped[key].dtype == array.dtype and mapped[key].shape == array.shape
        np.testing.assert_array_equal(np.asarray(mapped[key]), array)


def test_load_split_converts_the_written_arrays(tmp_path):
    written = write_split(tmp_path / "train")
    loaded = load_split(tmp_path / "train", KEYS)
    assert loaded["hr"].dtype == torch.float32 and loaded["sim_labels"].dtype == torch.int64
    np.testing.assert_array_equal(loaded["hr"].numpy(), written["hr"])
    np.testing.assert_array_equal(loaded["lr"].numpy(), written["lr"])
    np.testing.assert_array_equal(loaded["sim_labels"].numpy(), written["sim_labels"].astype(np.int64))
    loaded["hr"][0] = 7.0  # the eager copy is the caller's: the file is untouched
    assert np.load(tmp_path / "train" / "hr.npy")[0].max() <= 1.0


def test_memory_maps_are_read_only(tmp_path):
    write_split(tmp_path / "train")
    mapped = open_split(tmp_path / "train", KEYS)
    for key, array in mapped.items():
        assert not array.flags.writeable and array.mode == "r", key
        with pytest.raises(ValueError):
            array[0] = 0
    assert np.load(tmp_path / "train" / "hr.npy")[0].min() >= -1.0


def test_truncated_array_names_its_file(tmp_path):
    write_split(tmp_path / "train")
    path = tmp_path / "train" / "hr.npy"
    path.write_bytes(path.read_bytes()[:-100])  # a copy cut short: the header still promises 5 slices
    with pytest.raises(ValueError, match="truncated") as err:
        open_split(tmp_path / "train", KEYS)
    assert str(err.value).startswith(str(path))


def test_garbage_file_names_itself(tmp_path):
    write_split(tmp_path / "train")
    path = tmp_path / "train" / "lr.npy"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError) as err:
        load_split(tmp_path / "train", KEYS)
    assert str(err.value).startswith(str(path))


def test_missing_key_names_the_file(tmp_path):
    write_split(tmp_path / "train")
    with pytest.raises(FileNotFoundError) as err:
        open_split(tmp_path / "train", ("hr", "naive"))
    assert str(err.value).startswith(str(tmp_path / "train" / "naive.npy"))


def test_missing_split_folder_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro prepare") as err:
        open_split(tmp_path / "val", KEYS)
    assert str(err.value).startswith(str(tmp_path / "val"))


def test_empty_and_mismatched_arrays_are_refused(tmp_path):
    write_split(tmp_path / "train")
    np.save(tmp_path / "train" / "lr.npy", np.zeros((0, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="holds no images") as err:
        open_split(tmp_path / "train", KEYS)
    assert str(err.value).startswith(str(tmp_path / "train" / "lr.npy"))
    np.save(tmp_path / "train" / "lr.npy", np.zeros((4, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="differ in length"):
        open_split(tmp_path / "train", KEYS)


def test_the_real_side_of_a_sim2real_split_may_differ_in_length_from_the_sim_side(tmp_path):
    """As prepare writes it for the demo: 63 sim slices and 30 real ones in train."""
    folder = tmp_path / "train"
    folder.mkdir()
    for key, n in (("sim", 5), ("sim_labels", 5), ("real", 3), ("real_labels", 3)):
        np.save(folder / f"{key}.npy", np.zeros((n, 4, 4), np.float32))
    arrays = open_split(folder, ("sim", "sim_labels", "real", "real_labels"))
    assert [len(arrays[k]) for k in ("sim", "real")] == [5, 3]
    np.save(folder / "real_labels.npy", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="differ in length"):
        open_split(folder, ("sim", "sim_labels", "real", "real_labels"))


def test_non_finite_values_name_file_and_key(tmp_path):
    written = write_split(tmp_path / "train")
    hr = written["hr"].copy()
    hr[2, 0, 3, 3] = np.inf
    np.save(tmp_path / "train" / "hr.npy", hr)
    open_split(tmp_path / "train", KEYS)  # mapping does not scan the values
    with pytest.raises(ValueError, match="'hr' contains NaN or Inf") as err:
        load_split(tmp_path / "train", KEYS)
    assert str(err.value).startswith(str(tmp_path / "train" / "hr.npy"))


def test_split_digest_follows_the_bytes(tmp_path):
    write_split(tmp_path / "a")
    write_split(tmp_path / "b")
    assert split_digest(tmp_path / "a") == split_digest(tmp_path / "b")
    hr = np.load(tmp_path / "b" / "hr.npy")
    hr[0, 0, 0, 0] += 0.5
    np.save(tmp_path / "b" / "hr.npy", hr)
    assert split_digest(tmp_path / "a") != split_digest(tmp_path / "b")
    (tmp_path / "b" / "hr.npy").rename(tmp_path / "b" / "naive.npy")
    np.save(tmp_path / "b" / "hr.npy", np.load(tmp_path / "a" / "hr.npy"))
    assert split_digest(tmp_path / "a") != split_digest(tmp_path / "b")  # an extra file counts too
