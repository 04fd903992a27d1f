"""Sim-to-real on the test split: realism (distances to real slices) and content preservation (the judge's Dice)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from src.evaluation.dice import dice_columns, dice_counts, dice_statistics
from src.evaluation.distances import DistanceMetrics
from src.evaluation.intervals import Resamples, differences, estimates
from src.evaluation.per_slice import slice_rows
from src.evaluation.schema import TRANSLATED_VS_INPUT, Comparison, Content, Realism
from src.training.runtime import Runtime
from src.training.segmentation import predict_labels


@dataclass(frozen=True)
class TranslationResult:
    realism: Realism
    content: Content
    translated_vs_raw_sim: Comparison
    translated_classical_vs_classical: Comparison
    per_slice: list[dict]
    judge_labels: dict[str, torch.Tensor]  # {set: (n, H, W) judge labels}, for the example grid


def evaluate_translation(renderings: dict[str, torch.Tensor], real: torch.Tensor, sim_labels: torch.Tensor,
                         real_labels: torch.Tensor, judge: torch.nn.Module, class_names: list[str], runtime: Runtime,
                         distances: DistanceMetrics, draws: Resamples) -> TranslationResult:
    """Test renderings {raw_sim, classical, translated_sim, translated_classical: (n, 1, H, W)} of the sim
    labels, against the real test slices, and against the sims' own labels.

    Content preservation is the FCN-score: the judge, a U-Net trained on real slices only and
    never used in a loss, segments each rendering; Dice against the simulator's labels. The
    judge on the real test slices against their labels is the bar: a rendering that keeps its
    content is as segmentable as a real image.
    """
    realism = distances.statistics(renderings, real, draws)
    content, per_slice, predictions = {}, [], {}
    for name, images, labels in [*((n, x, sim_labels) for n, x in renderings.items()), ("real", real, real_labels)]:
        predictions[name] = predict_labels(judge, images, runtime, distances.settings.batch_size)
        numerators, denominators = dice_counts(predictions[name], labels, len(class_names))
        content[f"judge_on_{name}"] = dice_statistics(numerators, denominators, class_names, draws.slices)
        per_slice += slice_rows("content", f"judge_on_{name}", dice_columns(numerators, denominators, class_names))
    judged = {name: {"judge_dice_mean_foreground": content[f"judge_on_{name}"]["mean_foreground"], **realism[name]}
              for name in renderings}
    return TranslationResult(
        realism=Realism(**{name: estimates(row) for name, row in realism.items()}),
        content=Content(**{name: estimates(row) for name, row in content.items()}),
        translated_vs_raw_sim=differences(judged["translated_sim"], judged["raw_sim"], TRANSLATED_VS_INPUT),
        translated_classical_vs_classical=differences(judged["translated_classical"], judged["classical"],
                                                      TRANSLATED_VS_INPUT),
        per_slice=per_slice,
        judge_labels=predictions,
    )
