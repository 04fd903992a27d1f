"""prepare's arrays streamed with bounded fits (issue 22): src/data/sets.py and the block-wise leakage check."""

import dataclasses

import numpy as np
import pytest
from datatest_helpers import REPO

from src.config import load_params
from src.data import leakage, mr_simulator, sets
from src.data.classical import classical_rendering, fit_classical
from src.data.splits import SPLITS

DATA = load_params(REPO / "params.yaml").data
# With Rician noise, so that every rendering and every window depends on the draws (the demo's default has none).
DATA = dataclasses.replace(DATA, sim=dataclasses.replace(DATA.sim, noise_std=0.05))
SIZE = 16


def _parts(n: int = 12, seed: int = 0) -> dict:
    """Tiny split parts as src/data/stacks.py gathers them: blobs of CSF/GM/WM on a background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]

    def part(count: int, offset: int) -> dict:
        labels = np.zeros((count, SIZE, SIZE), np.uint8)
        for i in range(count):
            r = np.hypot(yy - SIZE / 2 - rng.uniform(-1, 1), xx - SIZE / 2 - rng.uniform(-1, 1))
            labels[i][r < 7], labels[i][r < 5], labels[i][r < 2.5] = 1, 2, 3
        images = np.where(labels[:, None] > 0, labels[:, None] / 3.0 + rng.normal(0, 0.05, (count, 1, SIZE, SIZE)),
                          -1.0).astype(np.float32)
        return {"images": images, "labels": labels, "slice_index": np.arange(offset, offset + count),
                "volume_index": np.zeros(count, np.int64), "axis": np.full(count, 2)}
    return {"train": part(n, 0), "val": part(n // 2, 100), "test": part(n // 2, 200),
            "train_sim": part(n // 2, 300), "train_real": part(n // 2, 400)}


def _arrays(out) -> dict:
    return {split: {key: np.array(value) for key, value in arrays.items()} for split, arrays in out.items()}


def test_chunk_size_does_not_change_a_byte(tmp_path, monkeypatch):
    """Each simulated row draws from its own stream, so streaming CHUNK rows at a time is an implementation detail."""
    parts = _parts()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole = _arrays(sets.sim2real_sets_into(tmp_path / "a", parts, None, DATA, seed=3))
    monkeypatch.setattr(sets, "CHUNK", 2)
    chunked = _arrays(sets.sim2real_sets_into(tmp_path / "b", parts, None, DATA, seed=3))
    for split in SPLITS:
        for key in sets.SIM2REAL_KEYS:
            np.testing.assert_array_equal(whole[split][key], chunked[split][key], err_msg=f"{split}/{key}")
    train = whole["train"]
    assert len(train["sim"]) == len(parts["train_sim"]["labels"]) * DATA.sim.variants_per_slice
    np.testing.assert_array_equal(whole["val"]["sim_labels"], parts["val"]["labels"])  # aligned, not deformed
    np.testing.assert_array_equal(train["real"], parts["train_real"]["images"])


def test_two_worker_processes_write_the_same_bytes(tmp_path, monkeypatch):
    parts = _parts()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    monkeypatch.setattr(sets, "POOL_MIN_ROWS", 0)  # the pool even for these few rows
    alone = _arrays(sets.sim2real_sets_into(tmp_path / "a", parts, None, DATA, seed=3, workers=1))
    pooled = _arrays(sets.sim2real_sets_into(tmp_path / "b", parts, None, DATA, seed=3, workers=2))
    for split in SPLITS:
        for key in sets.SIM2REAL_KEYS:
            np.testing.assert_array_equal(alone[split][key], pooled[split][key], err_msg=f"{split}/{key}")


def test_a_split_within_the_fit_bound_is_normalised_over_all_of_it(tmp_path):
    """FIT_SLICES >= n: the window is the whole split's percentile, as `simulate` computes it for a batch."""
    parts = _parts()
    out = _arrays(sets.sim2real_sets_into(tmp_path, parts, None, DATA, seed=3))["test"]
    rows = sets._SimRows(parts["test"]["labels"], 1, False, DATA, [3, sets.SIM_STREAM, SPLITS.index("test")])
    labels, signal = rows.render(np.arange(rows.n))
    expected = mr_simulator.normalise_from_zero_signal(signal, labels != 0, DATA.percentiles[1])
    np.testing.assert_array_equal(out["sim"][:, 0], expected)
    assert (out["sim"][out["sim_labels"][:, None] == 0] == -1.0).all()


def test_fits_read_a_bounded_seeded_sample(tmp_path, monkeypatch):
    """FIT_SLICES < n: the window comes from the sampled rows only (not the whole split), deterministically, and
    every row is still rendered and scaled with that one window."""
    parts = _parts(n=24)
    monkeypatch.setattr(sets, "FIT_SLICES", 4)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    out = _arrays(sets.sim2real_sets_into(tmp_path / "a", parts, None, DATA, seed=5))
    again = _arrays(sets.sim2real_sets_into(tmp_path / "b", parts, None, DATA, seed=5))
    np.testing.assert_array_equal(out["train"]["sim"], again["train"]["sim"])
    rows = sets._SimRows(parts["train_sim"]["labels"], DATA.sim.variants_per_slice, True, DATA,
                         [5, sets.SIM_STREAM, SPLITS.index("train")])
    sample = sets.fit_rows(rows.n, np.random.default_rng([5, sets.SIM_STREAM, SPLITS.index("train"), 2**32 - 1]))
    assert len(sample) == 4 < rows.n
    sample_labels, sample_signal = rows.render(sample)
    high = mr_simulator.foreground_high(sample_signal, sample_labels != 0, DATA.percentiles[1])
    labels, signal = rows.render(np.arange(rows.n))
    np.testing.assert_array_equal(out["train"]["sim"][:, 0],
                                  mr_simulator.scale_from_zero_signal(signal, labels != 0, high))
    whole_high = mr_simulator.foreground_high(signal, labels != 0, DATA.percentiles[1])
    assert high != whole_high  # the sample's window really is the sample's
    # and the classical map is fitted on its own bounded sample of train, then applied to every split
    fit_rng = np.random.default_rng([5, sets.SIM_STREAM, len(SPLITS)])
    sim_rows, real_rows = sets.fit_rows(rows.n, fit_rng), sets.fit_rows(len(parts["train_real"]["images"]), fit_rng)
    train = out["train"]
    matching = fit_classical(train["sim"][sim_rows], train["sim_labels"][sim_rows], train["real"][real_rows],
                             train["real_labels"][real_rows], DATA.classical_blur_sigma)
    np.testing.assert_array_equal(out["val"]["classical"], classical_rendering(
        out["val"]["sim"], out["val"]["sim_labels"], matching, DATA.classical_blur_sigma))


def test_arrays_are_memory_mapped_files(tmp_path):
    out = sets.sim2real_sets_into(tmp_path, _parts(), None, DATA, seed=0)
    for split in SPLITS:
        assert sorted(p.stem for p in (tmp_path / split).glob("*.npy")) == sorted(sets.SIM2REAL_KEYS)
        assert isinstance(out[split]["sim"], np.memmap) and not out[split]["sim"].flags.writeable


# ------------------------------------------------------------------ leakage, block by block


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 32, 32)).astype(np.float32)


def test_block_wise_best_match_equals_the_whole_correlation(monkeypatch):
    base = leakage.descriptors(_images(37, 0))
    other = leakage.descriptors(_images(53, 1))
    corr = base @ other.T
    monkeypatch.setattr(leakage, "CHUNK", 5)
    monkeypatch.setattr(leakage, "OTHER_CHUNK", 7)
    best, top = leakage._best_matches(base, other)
    np.testing.assert_array_equal(best, corr.argmax(axis=1))
    np.testing.assert_allclose(top, corr.max(axis=1), rtol=1e-12)  # BLAS sums a block in another order


@pytest.mark.parametrize("action", ["fail", "drop"])
def test_descriptors_on_disk_find_what_descriptors_in_ram_find(tmp_path, monkeypatch, action):
    """Copies planted in val and test (exact, noisy, mirrored) are found alike with descriptor files in `scratch`
    and small blocks; with drop, the kept rows come back as memory-mapped copies equal to the in-RAM ones."""
    train = _images(40, 2)
    val, test = _images(6, 3), _images(6, 4)
    val[1] = train[7]
    test[2] = train[11] + np.random.default_rng(5).normal(0, 0.02, train[11].shape).astype(np.float32)
    test[4] = train[20][..., ::-1]
    parts = {split: {"images": images, "labels": None, "slice_index": np.arange(len(images)),
                     "volume_index": np.zeros(len(images), np.int64), "axis": np.zeros(len(images), np.int64)}
             for split, images in (("train", train), ("val", val), ("test", test))}
    monkeypatch.setattr(leakage, "OTHER_CHUNK", 9)
    if action == "fail":
        with pytest.raises(leakage.LeakageError) as in_ram:
            leakage.check_splits(parts, ["v.nii"], "fail")
        with pytest.raises(leakage.LeakageError) as on_disk:
            leakage.check_splits(parts, ["v.nii"], "fail", scratch=tmp_path)
        assert str(in_ram.value) == str(on_disk.value) and "3 held-out slice(s)" in str(on_disk.value)
        return
    kept_ram, report_ram = leakage.check_splits(parts, ["v.nii"], "drop")
    kept_disk, report_disk = leakage.check_splits(parts, ["v.nii"], "drop", scratch=tmp_path)
    report_ram.pop("wall_time_s"), report_disk.pop("wall_time_s")
    assert report_ram == report_disk and [d["slice"] for d in report_disk["dropped"]["test"]] == [2, 4]
    assert isinstance(kept_disk["test"]["images"], np.memmap)
    for split in ("val", "test"):
        np.testing.assert_array_equal(kept_disk[split]["images"], kept_ram[split]["images"])
        np.testing.assert_array_equal(kept_disk[split]["slice_index"], kept_ram[split]["slice_index"])


# ------------------------------------------------------------------ RSS of memory-mapped passes


def _rss_file_kib() -> int:
    """This process's resident file-backed pages (Linux /proc/self/status RssFile), KiB."""
    line = next(line for line in open("/proc/self/status") if line.startswith("RssFile:"))
    return int(line.split()[1])


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise (Linux)")
def test_release_pages_drops_what_a_pass_mapped_and_keeps_the_data(tmp_path):
    """A pass over a 64 MiB memory map leaves its pages in RSS until released; after release_pages the RSS is
    back, and the data (written through the map) is intact when read again."""
    from src.atomic import reserved_memmap
    from src.data.mapped import release_pages

    written = reserved_memmap(tmp_path / "a.npy", np.float32, (256, 256, 256))
    for start in range(0, 256, 32):
        written[start:start + 32] = start
    written.flush()
    before = _rss_file_kib()
    reader = np.load(tmp_path / "a.npy", mmap_mode="r")
    total = sum(float(np.asarray(reader[i:i + 32]).sum()) for i in range(0, 256, 32))
    touched = _rss_file_kib()
    release_pages(reader, written)
    after = _rss_file_kib()
    assert touched - before > 32 * 1024  # the pass mapped (most of) its 64 MiB
    assert after - before < 8 * 1024
    expected = sum(float(start) * 32 * 256 * 256 for start in range(0, 256, 32))
    assert total == expected and float(np.asarray(reader[224:256]).sum()) == 224.0 * 32 * 256 * 256


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise (Linux)")
def test_take_rows_gathers_a_scattered_sample_without_mapping_the_file(tmp_path):
    """take_rows returns exactly array[rows], and what stays mapped afterwards is at most a block's worth, not the
    neighbourhoods of every sampled row (the classical fit's sample is scattered over a cohort's file)."""
    from src.atomic import reserved_memmap
    from src.data.mapped import take_rows

    written = reserved_memmap(tmp_path / "a.npy", np.float32, (1024, 128, 128))  # 64 MiB, 64 KiB a row
    for start in range(0, 1024, 64):
        written[start:start + 64] = np.arange(start, start + 64, dtype=np.float32)[:, None, None]
    written.flush()
    del written
    reader = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = np.sort(np.random.default_rng(0).choice(1024, 300, replace=False))
    before = _rss_file_kib()
    sample = take_rows(reader, rows)
    after = _rss_file_kib()
    assert not isinstance(sample, np.memmap) and sample.dtype == np.float32
    np.testing.assert_array_equal(sample, np.asarray(reader[rows]))
    assert after - before < 8 * 1024  # KiB: the 300 rows alone are 19 MiB


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise (Linux)")
def test_training_crops_leave_nothing_of_the_arrays_mapped(tmp_path, monkeypatch):
    """SliceCrops reads one slice per item from the memory-mapped split: a pass over many slices returns the
    slices' own values, and what stays mapped of a large map is at most a few slices' neighbourhoods, not the
    pages of every slice read (which would grow train_sr's RSS towards the size of a cohort's training arrays).
    A map under the threshold is left mapped (it cannot grow past its own size)."""
    from src.atomic import reserved_memmap
    from src.training import data
    from src.training.data import SliceCrops, image_crop

    written = reserved_memmap(tmp_path / "real.npy", np.float32, (1024, 1, 128, 128))  # 64 MiB, 64 KiB a slice
    for start in range(0, 1024, 64):
        written[start:start + 64] = np.arange(start, start + 64, dtype=np.float32)[:, None, None, None]
    written.flush()
    del written
    reader = np.load(tmp_path / "real.npy", mmap_mode="r")
    assert SliceCrops({"real": reader}, image_crop(32, "real"), seed=0).large_maps == []  # 64 MiB < 256 MiB
    monkeypatch.setattr(data, "RELEASE_ABOVE", 16 << 20)  # so a 64 MiB test file counts as large
    crops = SliceCrops({"real": reader}, image_crop(32, "real"), seed=0)
    before = _rss_file_kib()
    items = [crops[(0, i)][0] for i in range(0, 1024, 2)]  # 512 slices, 32 MiB
    after = _rss_file_kib()
    assert all(float(item.min()) == float(item.max()) == 2 * k for k, item in enumerate(items))
    assert after - before < 8 * 1024  # KiB
