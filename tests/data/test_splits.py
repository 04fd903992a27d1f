"""Leakage-free splits (src/data/splits.py): disjoint slabs, gaps respected, deterministic."""

import itertools

import pytest

from src.data.splits import SplitError, allocate, check_axes, slab_splits, subslabs, volume_splits

FRACTIONS = [0.7, 0.15, 0.15]


def _min_distance(a, b):
    return min(abs(i - j) for i in a for j in b)


@pytest.mark.parametrize("n_slices,gap,seed", [(13, 3, 0), (30, 1, 1), (100, 3, 42), (101, 5, 7), (7, 0, 3)])
def test_slabs_are_disjoint_contiguous_and_gapped(n_slices, gap, seed):
    s = slab_splits(n_slices, FRACTIONS, gap, 0.5, seed)
    slabs = {"train": s.train, "val": s.val, "test": s.test}
    for name, idx in slabs.items():
        assert idx, name
        assert idx == list(range(idx[0], idx[-1] + 1)), f"{name} is not contiguous"
        assert 0 <= idx[0] and idx[-1] < n_slices
    for a, b in itertools.combinations(slabs.values(), 2):
        assert not set(a) & set(b)
        assert _min_distance(a, b) > gap
    # sim and real train images come from disjoint sub-slabs of the train slab, gap between
    assert s.train_sim and s.train_real
    assert set(s.train_sim) | set(s.train_real) <= set(s.train)
    assert _min_distance(s.train_sim, s.train_real) > gap
    assert s.order[1] == "train" and set(s.order) == {"train", "val", "test"}


def test_slab_sizes_follow_fractions():
    s = slab_splits(206, FRACTIONS, 3, 0.5, 0)
    assert (len(s.train), len(s.val), len(s.test)) == (140, 30, 30)
    # Blocks alternate: each domain gets about half, minus the gaps between blocks.
    assert abs(len(s.train_sim) - len(s.train_real)) <= 10
    # One gap of 3 after every block of 10: at most len // 13 + 1 gaps.
    assert len(s.train_sim) + len(s.train_real) >= len(s.train) - 3 * (len(s.train) // 13 + 1)


def test_slabs_are_deterministic_from_the_seed():
    assert slab_splits(80, FRACTIONS, 2, 0.5, 5) == slab_splits(80, FRACTIONS, 2, 0.5, 5)
    orders = {slab_splits(80, FRACTIONS, 2, 0.5, seed).order for seed in range(12)}
    assert len(orders) == 2  # the seed picks which end holds the test slab


def test_too_few_slices_is_a_split_error_naming_the_gap():
    # The building block names its own argument; the prepare stage maps it to data.split_gap.
    with pytest.raises(SplitError, match=r"^12 slices are too few .* gaps of 3") as info:
        slab_splits(12, FRACTIONS, 3, 0.5, 0)
    assert info.value.setting == "gap" and "data." not in str(info.value)
    with pytest.raises(SplitError) as info:
        subslabs(list(range(4)), 0.5, 3, sim_first=True)
    assert info.value.setting == "gap"
    assert issubclass(SplitError, ValueError)  # the stage skeleton reports ValueErrors as `error: ...`


def test_volume_splits_partition_volumes():
    for n in (3, 4, 7, 20):
        v = volume_splits(n, FRACTIONS, 42, 0.5)
        groups = [v.train, v.val, v.test]
        assert all(groups) and sorted(sum(groups, [])) == list(range(n))
        if len(v.train) >= 2:
            assert v.train_sim and v.train_real and not set(v.train_sim) & set(v.train_real)
            assert sorted(v.train_sim + v.train_real) == v.train
        else:
            assert v.train_sim == v.train_real == []
    assert volume_splits(9, FRACTIONS, 1, 0.5) == volume_splits(9, FRACTIONS, 1, 0.5)
    with pytest.raises(ValueError):
        volume_splits(2, FRACTIONS, 0, 0.5)


def test_several_axes_need_several_volumes():
    check_axes(1, [2])
    check_axes(5, [0, 1, 2])
    with pytest.raises(SplitError, match=r"^\[0, 2\] .*intersect") as info:
        check_axes(1, [0, 2])
    assert info.value.setting == "axes"
    with pytest.raises(SplitError) as info:
        check_axes(3, [0, 2], n_train_volumes=1)
    assert info.value.setting == "axes"


def test_allocate():
    assert allocate(10, FRACTIONS) == [7, 2, 1]  # largest remainder, ties to the earlier part
    assert allocate(3, FRACTIONS) == [1, 1, 1]
    assert sum(allocate(17, [0.5, 0.5])) == 17
    with pytest.raises(ValueError):
        allocate(2, FRACTIONS)


def test_sim_and_real_blocks_alternate_and_cover_the_same_anatomy():
    """Both domains span the train slab (same anatomy range), disjoint with gaps between blocks."""
    indices = list(range(100, 170))
    sim, real = subslabs(indices, 0.5, 3, sim_first=True, block=10)
    assert not set(sim) & set(real)
    assert _min_distance(sim, real) > 3
    for part in (sim, real):
        assert min(part) - indices[0] < 30 and indices[-1] - max(part) < 30
    # Centres of mass of the two domains are close (contiguous halves would be ~35 apart).
    assert abs(sum(sim) / len(sim) - sum(real) / len(real)) < 12


def test_sim_fraction_sets_the_block_ratio():
    sim, real = subslabs(list(range(200)), 0.25, 2, sim_first=False, block=10)
    assert 0.15 < len(sim) / (len(sim) + len(real)) < 0.35
