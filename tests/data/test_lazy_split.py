"""The lazy prepared-split reader (src/data/prepared.py): memory maps, read-only, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.prepared import LAYOUT, load_meta, load_split, open_split, split_digest
from src.data.sets import not_written_meta
from src.prepare import NO_LABELS

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
    with pytest.raises(ValueError, match=r"expected 'lr' as float \(N, 1, h, w\) = \(5, 1, h, w\) \(sizes as in "
                                         r"hr\.npy\), found \(4, 1, 4, 4\)") as err:
        open_split(tmp_path / "train", KEYS)
    assert str(err.value).startswith(str(tmp_path / "train" / "lr.npy")) and "dvc repro prepare" in str(err.value)


def test_the_real_side_of_a_sim2real_split_may_differ_in_length_from_the_sim_side(tmp_path):
    """As prepare writes it for the demo: 63 sim slices and 30 real ones in train."""
    folder = tmp_path / "train"
    folder.mkdir()
    for key, n in (("sim", 5), ("real", 3)):
        np.save(folder / f"{key}.npy", np.zeros((n, 1, 4, 4), np.float32))
        np.save(folder / f"{key}_labels.npy", np.zeros((n, 4, 4), np.uint8))
    arrays = open_split(folder, ("sim", "sim_labels", "real", "real_labels"))
    assert [len(arrays[k]) for k in ("sim", "real")] == [5, 3]
    np.save(folder / "real_labels.npy", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"real_labels\.npy: expected 'real_labels' as integer "
                                         r"\(K, H, W\) = \(3, 4, 4\) \(sizes as in real\.npy, sim\.npy\), "
                                         r"found \(4, 4, 4\)"):
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


def test_a_large_split_is_hashed_once_per_process_until_a_file_changes(tmp_path, monkeypatch):
    """A stage asks for the train split's digest up to three times; a split over the cache threshold is read
    once, and a file replaced as prepare replaces files (a new file renamed into place) is read again."""
    from src.data import prepared
    monkeypatch.setattr(prepared, "_CACHED_BYTES", 0)  # every split counts as large
    monkeypatch.setattr(prepared, "_DIGESTS", {})
    write_split(tmp_path / "a")
    reads = []
    real_open = open
    monkeypatch.setattr(prepared, "open", lambda path, *a, **k: reads.append(path) or real_open(path, *a, **k),
                        raising=False)
    first = split_digest(tmp_path / "a")
    files = len(reads)
    assert split_digest(tmp_path / "a") == first and len(reads) == files  # served from the cache
    hr = np.load(tmp_path / "a" / "hr.npy")
    hr[0, 0, 0, 0] += 0.5
    np.save(tmp_path / "a" / "new.npy", hr)
    (tmp_path / "a" / "new.npy").replace(tmp_path / "a" / "hr.npy")  # same name and size, another inode
    assert split_digest(tmp_path / "a") != first and len(reads) == 2 * files


# ------------------------------------------------------------------ the layout table and meta.json


def write_sim2real_split(folder: Path, m: int = 5, k: int = 3, size: int = 8) -> None:
    """A sim2real split with every array prepare writes (src/data/sets.py), zeros of the right shapes and dtypes."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in {"sim": np.zeros((m, 1, size, size), np.float32),
                       "classical": np.zeros((m, 1, size, size), np.float32),
                       "sim_labels": np.zeros((m, size, size), np.uint8),
                       "real": np.zeros((k, 1, size, size), np.float32),
                       "real_labels": np.zeros((k, size, size), np.uint8),
                       "real_slice_index": np.arange(k, dtype=np.int64),
                       "real_volume_index": np.zeros(k, np.int64)}.items():
        np.save(folder / f"{key}.npy", array)


@pytest.mark.parametrize("key, array, message", [
    ("sim", np.zeros((5, 8, 8), np.float32),
     r"expected 'sim' as float \(M, 1, H, W\), 4 axes, found \(5, 8, 8\) \(no channel axis\)"),
    ("sim_labels", np.zeros((5, 8, 6), np.uint8),
     r"expected 'sim_labels' as integer \(M, H, W\) = \(5, 8, 8\) \(sizes as in sim\.npy\), found \(5, 8, 6\)"),
    ("real_slice_index", np.arange(2),
     r"expected 'real_slice_index' as integer \(K,\) = \(3,\) \(sizes as in real\.npy\), found \(2,\)"),
    ("real", np.zeros((3, 1, 8, 8), np.int16), r"expected 'real' as float \(K, 1, H, W\), found dtype int16"),
    ("real", np.zeros((3, 1, 8, 8), object), r"expected 'real' as float \(K, 1, H, W\), found dtype object"),
    ("real_labels", np.zeros((3, 8, 8), np.float32), r"expected 'real_labels' as integer \(K, H, W\), found dtype"),
    ("classical", np.zeros((5, 3, 8, 8), np.float32),
     r"expected 'classical' as float \(M, 1, H, W\) = \(5, 1, 8, 8\) \(sizes as in sim\.npy\), found \(5, 3, 8, 8\)"),
], ids=["no_channel_axis", "labels_of_another_size", "index_of_another_length", "int_images", "object_images",
        "float_labels", "three_channels"])
def test_an_array_off_the_layout_is_named_even_when_the_caller_does_not_read_it(tmp_path, key, array, message):
    write_sim2real_split(tmp_path / "train")
    np.save(tmp_path / "train" / f"{key}.npy", array, allow_pickle=True)
    with pytest.raises(ValueError, match=message) as err:
        open_split(tmp_path / "train", ("sim",))
    assert str(err.value).startswith(str(tmp_path / "train" / f"{key}.npy"))
    assert str(err.value).endswith("re-run `dvc repro prepare` to rebuild it")


def test_a_split_as_prepare_writes_it_opens(tmp_path):
    write_sim2real_split(tmp_path / "train")
    keys = tuple(key for key in LAYOUT if (tmp_path / "train" / f"{key}.npy").is_file())
    assert len(keys) == 7 and set(open_split(tmp_path / "train", keys)) == set(keys)


@pytest.mark.parametrize("folder, content, message", [
    ("sim2real", b"{\"written\": true, ", "not valid JSON"),
    ("sim2real", b"\x80\x81", "not valid JSON"),
    ("sim2real", b"[1, 2]", "holds [1, 2], not a JSON object"),
    ("sim2real", b"{\"class_names\": [\"background\", \"csf\", \"gm\", \"wm\"]}", "lacks the key 'written'"),
    ("sim2real", b"{\"written\": true}", "lacks the key 'class_names'"),
    ("sim2real", b"{\"written\": true, \"class_names\": [\"a\", \"b\"]}",
     "'class_names' must be the classes ['background', 'csf', 'gm', 'wm'] (src/data/labels.py), found [\"a\", \"b\"]"),
    ("sr", b"{\"degradation\": \"kspace\"}", "lacks the key 'scale' (a positive integer)"),
    ("sr", b"{\"scale\": true, \"degradation\": \"kspace\"}", "'scale' must be a positive integer, found true"),
    ("sr", b"{\"scale\": 4}", "lacks the key 'degradation'"),
], ids=["cut_short", "not_text", "a_list", "no_written", "no_class_names", "other_classes", "no_scale",
        "scale_a_bool", "no_degradation"])
def test_meta_a_stage_cannot_read_names_the_file_and_key(tmp_path, folder, content, message):
    path = tmp_path / folder / "meta.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        load_meta(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), err.value
    assert str(err.value).endswith("re-run `dvc repro prepare` to rebuild it")


def test_meta_as_prepare_writes_it_is_read_back(tmp_path):
    (tmp_path / "sr").mkdir()
    (tmp_path / "sr" / "meta.json").write_text(json.dumps({"scale": 4, "degradation": "kspace", "counts": {}}))
    assert load_meta(tmp_path / "sr" / "meta.json")["scale"] == 4
    (tmp_path / "elsewhere").mkdir()  # a folder the table does not know: only an object is required
    (tmp_path / "elsewhere" / "meta.json").write_text("{}")
    assert load_meta(tmp_path / "elsewhere" / "meta.json") == {}


def test_a_sim2real_set_prepare_left_empty_says_why_instead_of_asking_for_a_rebuild(tmp_path):
    # Inputs without labels/ (a supported mode): prepare writes only meta.json, and running it again changes nothing.
    folder = tmp_path / "sim2real"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps(not_written_meta(NO_LABELS)))
    for read in (lambda: load_meta(folder / "meta.json"), lambda: open_split(folder / "train", ("sim",)),
                 lambda: load_split(folder / "test", ("real",)), lambda: split_digest(folder / "test")):
        with pytest.raises(FileNotFoundError) as err:
            read()
        message = str(err.value)
        assert message.startswith(f"{folder}: the prepared data has no sim-to-real split"), message
        assert "no tissue labels" in message and "labels/" in message and "`dvc repro train_sr`" in message
        assert "dvc repro prepare" not in message
