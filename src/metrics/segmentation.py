"""Segmentation agreement: Dice per class over a whole set of label maps."""

from __future__ import annotations

import torch


def dice_per_class(pred_labels: torch.Tensor, true_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Dice coefficient per class, pooled over every pixel of the set (Dice 1945; "micro" over images).

    Dice_c = 2 |P_c ∩ T_c| / (|P_c| + |T_c|), the counts summed over all images before dividing,
    so small structures on few slices are not drowned by slices where the class is absent.
    Written by hand because MONAI's DiceMetric and torchmetrics average per image and score a
    class absent from both prediction and truth as 0 or 1, where we want NaN (no evidence).

    pred_labels, true_labels: integer label maps (N, H, W) with values in [0, n_classes).
    Returns (n_classes,) float64 Dice in [0, 1]; NaN for a class absent from both.
    """
    if pred_labels.shape != true_labels.shape or pred_labels.ndim != 3:
        raise ValueError(
            f"expected two label maps of the same shape (N, H, W), got {tuple(pred_labels.shape)} "
            f"and {tuple(true_labels.shape)}"
        )
    if pred_labels.is_floating_point() or true_labels.is_floating_point():
        raise ValueError("label maps must be integer tensors (take argmax of the logits first)")
    for labels, which in ((pred_labels, "pred_labels"), (true_labels, "true_labels")):
        if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{which} has values outside [0, {n_classes})")
    pred_flat = pred_labels.flatten().long()
    true_flat = true_labels.flatten().long()
    pred_count = torch.bincount(pred_flat, minlength=n_classes).double()
    true_count = torch.bincount(true_flat, minlength=n_classes).double()
    intersection = torch.bincount(pred_flat[pred_flat == true_flat], minlength=n_classes).double()
    denominator = pred_count + true_count
    # 0/0 -> NaN for classes absent from both, on purpose.
    return 2.0 * intersection / denominator


def mean_foreground_dice(per_class: torch.Tensor) -> float:
    """Mean Dice over the foreground classes 1..n-1 (class 0, background, excluded), ignoring NaN.

    per_class: (n_classes,) from dice_per_class. Returns a python float; NaN if no foreground
    class occurs in the set.
    """
    return float(torch.nanmean(per_class[1:].double()))
