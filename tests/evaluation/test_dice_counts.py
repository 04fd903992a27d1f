"""Per-slice Dice counts: summed over slices they give the pooled Dice of dice_per_class."""

import numpy as np
import pytest
import torch

from src.evaluation.dice import dice_columns, dice_counts, dice_statistics
from src.metrics.bootstrap import resample_indices
from src.metrics.segmentation import dice_per_class

CLASSES = ["background", "csf", "gm", "wm"]


def random_labels(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    true = torch.randint(0, 4, (n, 16, 16), generator=generator)
    pred = torch.where(torch.rand(n, 16, 16, generator=generator) < 0.7, true, torch.randint(0, 4, (n, 16, 16)))
    return pred, true


def test_counts_summed_over_slices_give_the_pooled_dice_and_per_slice_the_slice_dice():
    pred, true = random_labels(6, seed=0)
    numerators, denominators = dice_counts(pred, true, 4)
    assert numerators.shape == denominators.shape == (6, 4)
    pooled = numerators.sum(0) / denominators.sum(0)
    assert pooled == pytest.approx(dice_per_class(pred, true, 4).numpy())
    for i in range(6):
        assert numerators[i] / denominators[i] == pytest.approx(dice_per_class(pred[i:i + 1], true[i:i + 1], 4).numpy())


def test_statistics_and_columns_agree_with_the_pooled_definition():
    pred, true = random_labels(5, seed=1)
    pred[:, :, :4] = 1  # csf everywhere in a band
    numerators, denominators = dice_counts(pred, true, 4)
    stats = dice_statistics(numerators, denominators, CLASSES, resample_indices(5, 50, seed=2))
    per_class = dice_per_class(pred, true, 4).numpy()
    assert list(stats) == ["csf", "gm", "wm", "mean_foreground"]
    assert [stats[c].value for c in ("csf", "gm", "wm")] == pytest.approx(per_class[1:])
    assert stats["mean_foreground"].value == pytest.approx(per_class[1:].mean())
    columns = dice_columns(numerators, denominators, CLASSES)
    assert columns["dice_gm_num"].sum() / columns["dice_gm_den"].sum() == pytest.approx(per_class[2])
    assert columns["dice_mean_foreground"] == pytest.approx(np.nanmean(numerators[:, 1:] / denominators[:, 1:], axis=1))


def test_a_class_absent_from_a_slice_is_nan_there_and_does_not_count():
    true = torch.zeros(2, 4, 4, dtype=torch.long)
    true[0, 0, 0] = 3
    numerators, denominators = dice_counts(true.clone(), true, 4)
    columns = dice_columns(numerators, denominators, CLASSES)
    assert columns["dice_wm"][0] == 1 and np.isnan(columns["dice_wm"][1])
    assert np.isnan(columns["dice_csf"]).all()
    with pytest.raises(ValueError, match="one shape"):
        dice_counts(true, true[:1], 4)
