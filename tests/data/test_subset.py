"""Deterministic, nested train subsets (src/data/subset.py)."""

import numpy as np
import pytest

from src.data.subset import subset_size, train_subset


@pytest.mark.parametrize("n", [7, 66, 70, 1000])
def test_subsets_are_nested_across_fractions(n):
    fractions = [0.05, 0.1, 0.2, 0.5, 1.0]
    subsets = [set(train_subset(n, f, seed=42).tolist()) for f in fractions]
    for small, large in zip(subsets, subsets[1:]):
        assert small <= large
    assert subsets[-1] == set(range(n))


def test_ten_percent_is_inside_twenty_percent_and_deterministic():
    ten, twenty = train_subset(66, 0.1, seed=42), train_subset(66, 0.2, seed=42)
    assert set(ten) <= set(twenty)
    assert len(ten) == 7 and len(twenty) == 14
    np.testing.assert_array_equal(ten, train_subset(66, 0.1, seed=42))
    assert not np.array_equal(ten, train_subset(66, 0.1, seed=43))   # the seed chooses the slices
    assert list(ten) == sorted(ten) and len(set(ten)) == len(ten)


def test_subset_size_rounds_up_and_keeps_at_least_one():
    assert subset_size(70, 0.1) == 7   # not 8 from 7.000000000000001
    assert subset_size(66, 0.1) == 7
    assert subset_size(5, 0.01) == 1
    with pytest.raises(ValueError):
        subset_size(10, 0.0)
    with pytest.raises(ValueError):
        subset_size(0, 0.5)
