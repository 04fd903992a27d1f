"""Tests for set-level per-class Dice on hand-made label maps."""

import math

import pytest
import torch

from src.metrics.segmentation import dice_per_class, mean_foreground_dice


def _hand_made():
    # Two 2x4 label maps, classes 0..3; class 3 appears nowhere.
    true = torch.tensor(
        [
            [[0, 1, 1, 0], [0, 2, 2, 0]],
            [[1, 1, 0, 0], [0, 0, 0, 0]],
        ]
    )
    pred = torch.tensor(
        [
            [[0, 1, 0, 0], [0, 2, 2, 2]],
            [[1, 1, 1, 0], [0, 0, 0, 0]],
        ]
    )
    return pred, true


def test_dice_per_class_pooled_over_the_set_by_hand():
    pred, true = _hand_made()
    dice = dice_per_class(pred, true, n_classes=4)
    # class 0: |P|=9, |T|=10, overlap 8 -> 16/19
    # class 1: |P|=4, |T|=4, overlap 3 -> 6/8
    # class 2: |P|=3, |T|=2, overlap 2 -> 4/5
    # class 3: absent from both -> NaN
    assert dice.shape == (4,)
    assert dice[:3].tolist() == pytest.approx([16 / 19, 6 / 8, 4 / 5])
    assert math.isnan(dice[3].item())


def test_dice_is_micro_not_mean_of_images():
    pred, true = _hand_made()
    per_image_mean = (dice_per_class(pred[:1], true[:1], 4)[1] + dice_per_class(pred[1:], true[1:], 4)[1]) / 2
    # image 0: 2*1/(1+2) = 2/3; image 1: 2*2/(3+2) = 4/5; their mean differs from the pooled 3/4.
    assert per_image_mean.item() == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert dice_per_class(pred, true, 4)[1].item() == pytest.approx(0.75)


def test_dice_predicted_only_class_scores_zero():
    true = torch.zeros(1, 2, 2, dtype=torch.long)
    pred = torch.tensor([[[0, 1], [0, 0]]])
    dice = dice_per_class(pred, true, n_classes=2)
    assert dice.tolist() == pytest.approx([2 * 3 / 7, 0.0])


def test_mean_foreground_dice_skips_background_and_nan():
    per_class = torch.tensor([0.99, 0.5, float("nan"), 0.7], dtype=torch.float64)
    assert mean_foreground_dice(per_class) == pytest.approx(0.6)
    assert math.isnan(mean_foreground_dice(torch.tensor([0.9, float("nan")])))


def test_dice_input_checks():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        dice_per_class(labels, torch.zeros(1, 4, 5, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="integer"):
        dice_per_class(labels.float(), labels, 2)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        dice_per_class(labels + 2, labels, 2)
