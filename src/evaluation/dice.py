"""Dice per slice as counts, so that the pooled Dice of any resample of slices is a ratio of sums."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from src.evaluation.intervals import Statistic, pooled_statistic


def dice_counts(pred_labels: torch.Tensor, true_labels: torch.Tensor, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and class: numerator 2 |P ∩ T| and denominator |P| + |T|, each (n, n_classes) float64.

    pred_labels, true_labels: integer label maps (n, H, W) in [0, n_classes). Summed over
    slices, numerator / denominator is src.metrics.segmentation.dice_per_class (Dice pooled
    over every pixel of the set); per slice it is that slice's Dice (0/0 = NaN: class absent).
    """
    if pred_labels.shape != true_labels.shape or pred_labels.ndim != 3:
        raise ValueError(f"expected two label maps (n, H, W) of one shape, got {tuple(pred_labels.shape)} "
                         f"and {tuple(true_labels.shape)}")
    n = pred_labels.shape[0]
    pred = pred_labels.reshape(n, -1).long()
    true = true_labels.reshape(n, -1).long()
    # The bins below are slice * C + class: a value outside [0, C) would count in another slice's bin, silently.
    for name, labels in (("predicted", pred), ("true", true)):
        outside = ((labels < 0) | (labels >= n_classes)).any(dim=1)
        if outside.any():
            row = int(outside.nonzero()[0])
            raise ValueError(f"{name} labels of slice {row} fall outside the {n_classes} classes "
                             f"(values {sorted(set(labels[row].tolist()) - set(range(n_classes)))})")
    offset = torch.arange(n)[:, None] * n_classes  # one bincount for all slices: bin = slice * C + class

    def count(labels: torch.Tensor) -> np.ndarray:
        return torch.bincount(labels.flatten(), minlength=n * n_classes).reshape(n, n_classes).double().numpy()

    overlap = torch.where(pred == true, pred + offset, -1).flatten()
    overlap = torch.bincount(overlap[overlap >= 0], minlength=n * n_classes).reshape(n, n_classes).double().numpy()
    return 2.0 * overlap, count(pred + offset) + count(true + offset)


def dice_statistics(numerators: np.ndarray, denominators: np.ndarray, class_names: list[str],
                    indices: np.ndarray) -> dict[str, Statistic]:
    """Pooled Dice per foreground class and their NaN-ignoring mean `mean_foreground`, with resamples.

    numerators, denominators: (n, C) from dice_counts; class 0 (background) is not reported.
    """
    per_class = {name: pooled_statistic(numerators[:, c], denominators[:, c], indices)
                 for c, name in enumerate(class_names) if c > 0}
    stats = list(per_class.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no foreground class occurs: NaN
        mean_value = float(np.nanmean([s.value for s in stats]))
        mean_resampled = np.nanmean(np.stack([s.resampled for s in stats]), axis=0)
    return per_class | {"mean_foreground": Statistic(mean_value, mean_resampled, len(numerators))}


def dice_columns(numerators: np.ndarray, denominators: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """The per-slice CSV columns: dice_<class> and dice_mean_foreground per slice, and the counts
    dice_<class>_num / dice_<class>_den whose sums over slices give the pooled (headline) Dice."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_slice = numerators / denominators
        columns = {f"dice_{name}": per_slice[:, c] for c, name in enumerate(class_names) if c > 0}
        columns["dice_mean_foreground"] = np.nanmean(per_slice[:, 1:], axis=1)
    for c, name in enumerate(class_names):
        if c > 0:
            columns |= {f"dice_{name}_num": numerators[:, c], f"dice_{name}_den": denominators[:, c]}
    return columns
