"""Sim-to-real on the test split: realism (distances to real slices) and content preservation (the judge's Dice)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from src.evaluation.dice import dice_columns, dice_counts, dice_statistics
from src.evaluation.distances import DistanceMetrics
from src.evaluation.intervals import Resamples, differences, estimates
from src.evaluation.per_slice import slice_rows
from src.evaluation.schema import TRANSLATED_VS_RAW_SIM, Comparison, Content, Realism
from src.training.runtime import Runtime
from src.training.segmentation import predict_labels


@dataclass(frozen=True)
class TranslationResult:
    realism: Realism
    content: Content
    translated_vs_raw_sim: Comparison
    per_slice: list[dict]
    judge_on_translated: torch.Tensor  # (n, H, W) labels, for the example grid


def evaluate_translation(raw_sim: torch.Tensor, translated: torch.Tensor, real: torch.Tensor, sim_labels: torch.Tensor,
                         judge: torch.nn.Module, class_names: list[str], runtime: Runtime, distances: DistanceMetrics,
                         draws: Resamples) -> TranslationResult:
    """Raw and translated test sims (n, 1, H, W) against the real test slices, and against the sims' own labels.

    Content preservation is the FCN-score: the judge, a U-Net trained on real slices only and
    never used in a loss, segments raw and translated sim; Dice against the simulator's labels.
    """
    sets = {"raw_sim": raw_sim, "translated_sim": translated}
    realism = distances.statistics(sets, real, draws)
    content, per_slice, predictions = {}, [], {}
    for name, images in sets.items():
        predictions[name] = predict_labels(judge, images, runtime, distances.settings.batch_size)
        numerators, denominators = dice_counts(predictions[name], sim_labels, len(class_names))
        content[f"judge_on_{name}"] = dice_statistics(numerators, denominators, class_names, draws.slices)
        per_slice += slice_rows("content", f"judge_on_{name}", dice_columns(numerators, denominators, class_names))
    judge_dice = {name: {"judge_dice_mean_foreground": content[f"judge_on_{name}"]["mean_foreground"], **realism[name]}
                  for name in sets}
    return TranslationResult(
        realism=Realism(**{name: estimates(row) for name, row in realism.items()}),
        content=Content(**{name: estimates(row) for name, row in content.items()}),
        translated_vs_raw_sim=differences(judge_dice["translated_sim"], judge_dice["raw_sim"],
                                          TRANSLATED_VS_RAW_SIM),
        per_slice=per_slice,
        judge_on_translated=predictions["translated_sim"],
    )
