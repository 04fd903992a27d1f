"""Normalisation, foreground masks, slicing, square crops and resizing (src/data/preprocess.py)
and tissue labels (src/data/labels.py)."""

import numpy as np
import pytest
from datatest_helpers import synthetic_head

from src.data.labels import CLASS_NAMES, brain_mask_from_tissue, tissue_labels
from src.data.preprocess import (crop_square, foreground_mask, kept_slices, normalise_volume, resize_images,
                                 resize_labels, set_background, slices_along, square_box)


def test_normalise_maps_percentile_window_and_sets_background():
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    mask = vol >= 500
    before = vol.copy()
    out = normalise_volume(vol, mask, [0.0, 100.0])
    np.testing.assert_array_equal(vol, before)  # input untouched
    assert out.dtype == np.float32
    assert np.all(out[~mask] == -1.0)
    assert out[mask].min() == -1.0 and out[mask].max() == 1.0
    np.testing.assert_allclose(out.ravel()[749], (749 - 500) / 499 * 2 - 1, atol=1e-6)
    robust = normalise_volume(vol, mask, [10.0, 90.0])
    assert robust.min() == -1.0 and robust.max() == 1.0  # clipped outside the window


def test_normalise_rejects_empty_or_constant_foreground():
    vol = np.ones((4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="empty foreground"):
        normalise_volume(vol, np.zeros_like(vol, bool), [1.0, 99.0])
    with pytest.raises(ValueError, match="constant"):
        normalise_volume(vol, np.ones_like(vol, bool), [1.0, 99.0])


def _ventricles(labels):
    """CSF well inside the head (the synthetic ventricles), not the outer CSF shell."""
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in labels.shape], indexing="ij")
    central = np.sqrt(sum(g ** 2 for g in grid)) < 0.5  # the outer CSF shell starts at r > 0.68
    return (labels == 1) & central


def test_otsu_foreground_mask_contains_the_ventricles():
    image, labels = synthetic_head()
    mask = foreground_mask(image)
    assert _ventricles(labels).sum() > 50
    assert mask[_ventricles(labels)].all()  # dark but enclosed: holes are filled
    assert mask[labels >= 2].all() and not mask[labels == 0].any()


def test_slices_are_upright_and_kept_by_foreground_fraction():
    vol = np.zeros((5, 6, 7), np.float32)
    vol[1, 2, 3] = 1
    s = slices_along(vol, 2)
    assert s.shape == (7, 6, 5) and s[3, 2, 1] == 1  # (slice, rows = axis 1, cols = axis 0)
    assert slices_along(vol, 0).shape == (5, 7, 6)
    mask = np.zeros((4, 10, 10), bool)
    mask[1, :2] = True  # 20 %
    mask[2, :5] = True  # 50 %
    np.testing.assert_array_equal(kept_slices(mask, 0.2), [1, 2])
    np.testing.assert_array_equal(kept_slices(mask, 0.0), [1, 2])  # empty slices never kept


def test_square_crop_covers_foreground_and_pads_with_background():
    mask = np.zeros((2, 20, 30), bool)
    mask[0, 2:8, 0:20] = True
    images = np.where(mask, 0.5, -1.0).astype(np.float32)
    box = square_box(mask)
    cropped = crop_square(images, box, -1.0)
    row0, col0, side = box
    assert cropped.shape == (2, side, side) and side >= 20
    assert (cropped == 0.5).sum() == (images == 0.5).sum()  # nothing of the foreground is cut
    assert np.all(cropped[:, : -row0] == -1.0)  # rows above the image are padding
    labels = crop_square(mask.astype(np.uint8), box, 0)
    assert labels.sum() == mask.sum()
    with pytest.raises(ValueError):
        square_box(np.zeros((1, 4, 4), bool))


def test_resize():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (3, 40, 40)).astype(np.uint8)
    small = resize_labels(labels, 16)
    assert small.shape == (3, 16, 16) and small.dtype == np.uint8
    assert set(np.unique(small)) <= {0, 1, 2, 3}
    images = rng.uniform(-1, 1, (3, 40, 40)).astype(np.float32)
    resized = resize_images(images, 16)
    assert resized.shape == (3, 16, 16) and resized.dtype == np.float32
    assert abs(resized.mean() - images.mean()) < 0.02
    out = set_background(resized * 2, small > 0)
    assert out.min() >= -1 and out.max() <= 1 and np.all(out[small == 0] == -1)


def test_tissue_labels_argmax_inside_mask():
    gm = np.array([[0.1, 0.6, 0.2, 0.0]])
    wm = np.array([[0.1, 0.3, 0.7, 0.0]])
    mask = np.array([[True, True, True, False]])
    np.testing.assert_array_equal(tissue_labels(gm, wm, mask), [[1, 2, 3, 0]])
    assert CLASS_NAMES == ("background", "csf", "gm", "wm")


def test_brain_mask_fills_ventricles():
    _, labels = synthetic_head()
    gm = (labels == 2).astype(np.float32)
    wm = (labels == 3).astype(np.float32)
    mask = brain_mask_from_tissue(gm, wm)
    assert mask[_ventricles(labels)].all()  # enclosed CSF is inside the mask
    assert mask[(gm + wm) > 0].all() and not mask[labels == 0].any()
