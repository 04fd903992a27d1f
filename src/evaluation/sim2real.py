"""Sim-to-real on the test split: realism (distances to real slices), paired fidelity (each rendering against the
real slice of the same anatomy) and content preservation (the judge's Dice)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from src.evaluation.dice import dice_columns, dice_counts, dice_statistics
from src.evaluation.distances import DistanceMetrics
from src.evaluation.intervals import Resamples, Statistic, differences, estimates, mean_statistic
from src.evaluation.per_slice import slice_rows
from src.evaluation.schema import (FIDELITY, FIDELITY_VS_CLASSICAL_ROWS, FIDELITY_VS_RAW_SIM_ROWS,
                                   TRANSLATED_VS_INPUT, Comparison, Content, Fidelity, FidelityVsClassical,
                                   FidelityVsRawSim, Realism)
from src.metrics.image_quality import masked_mae, masked_psnr, masked_ssim
from src.training.runtime import Runtime
from src.training.segmentation import predict_labels


@dataclass(frozen=True)
class TranslationResult:
    realism: Realism
    fidelity: Fidelity
    fidelity_vs_raw_sim: FidelityVsRawSim
    fidelity_vs_classical: FidelityVsClassical
    content: Content
    translated_vs_raw_sim: Comparison
    translated_classical_vs_classical: Comparison
    per_slice: list[dict]
    judge_labels: dict[str, torch.Tensor]  # {set: (n, H, W) judge labels}, for the example grid


def paired_fidelity(renderings: dict[str, torch.Tensor], real: torch.Tensor, foreground: torch.Tensor,
                    data_range: float, aligned: bool) -> dict[str, dict[str, np.ndarray]]:
    """Per slice, {rendering: {"psnr_db", "ssim", "mae": (n,)}}: each rendering against the real slice of the same
    anatomy, on the foreground (n, H, W) bool only. The CycleGAN paper scores its unpaired model on paired data
    the same way (Cityscapes labels -> photo); MR -> CT translation papers report the MAE against the registered CT.

    aligned: False when the sims are not rendered from the real slices' labels (the user's own sims): then no
    rendering has a counterpart and every value is NaN, never a score against an unrelated slice.
    """
    if not aligned:
        nan = np.full(len(real), np.nan)
        return {name: {key: nan.copy() for key in FIDELITY} for name in renderings}
    mask = foreground[:, None].bool()
    return {name: {"psnr_db": masked_psnr(images, real, data_range, mask).numpy(),
                   "ssim": masked_ssim(images, real, data_range, mask).numpy(),
                   "mae": masked_mae(images, real, mask).numpy()}
            for name, images in renderings.items()}


def evaluate_translation(renderings: dict[str, torch.Tensor], real: torch.Tensor, sim_labels: torch.Tensor,
                         real_labels: torch.Tensor, judge: torch.nn.Module, class_names: list[str], runtime: Runtime,
                         distances: DistanceMetrics, draws: Resamples, data_range: float,
                         aligned: bool) -> TranslationResult:
    """Test renderings {raw_sim, classical, translated_sim, translated_classical: (n, 1, H, W)} of the sim
    labels, against the real test slices, and against the sims' own labels.

    Content preservation is the FCN-score: the judge, a U-Net trained on real slices only and
    never used in a loss, segments each rendering; Dice against the simulator's labels. The
    judge on the real test slices against their labels is the bar: a rendering that keeps its
    content is as segmentable as a real image. Paired fidelity: `paired_fidelity` on the
    foreground of the sim labels (aligned: the real slice's own labels).
    """
    realism = distances.statistics(renderings, real, draws)
    fidelity_columns = paired_fidelity(renderings, real, sim_labels != 0, data_range, aligned)
    fidelity: dict[str, dict[str, Statistic]] = {
        name: {key: mean_statistic(values, draws.slices) for key, values in columns.items()}
        for name, columns in fidelity_columns.items()}
    per_slice = [row for name, columns in fidelity_columns.items()
                 for row in slice_rows("fidelity", name, {f"fidelity_{k}": v for k, v in columns.items()})]
    content, predictions = {}, {}
    for name, images, labels in [*((n, x, sim_labels) for n, x in renderings.items()), ("real", real, real_labels)]:
        predictions[name] = predict_labels(judge, images, runtime, distances.settings.batch_size)
        numerators, denominators = dice_counts(predictions[name], labels, len(class_names))
        content[f"judge_on_{name}"] = dice_statistics(numerators, denominators, class_names, draws.slices)
        per_slice += slice_rows("content", f"judge_on_{name}", dice_columns(numerators, denominators, class_names))
    judged = {name: {"judge_dice_mean_foreground": content[f"judge_on_{name}"]["mean_foreground"], **realism[name]}
              for name in renderings}
    return TranslationResult(
        realism=Realism(**{name: estimates(row) for name, row in realism.items()}),
        fidelity=Fidelity(**{name: estimates(row) for name, row in fidelity.items()}),
        fidelity_vs_raw_sim=FidelityVsRawSim(**{name: differences(fidelity[name], fidelity["raw_sim"], FIDELITY)
                                                for name in FIDELITY_VS_RAW_SIM_ROWS}),
        fidelity_vs_classical=FidelityVsClassical(**{name: differences(fidelity[name], fidelity["classical"], FIDELITY)
                                                     for name in FIDELITY_VS_CLASSICAL_ROWS}),
        content=Content(**{name: estimates(row) for name, row in content.items()}),
        translated_vs_raw_sim=differences(judged["translated_sim"], judged["raw_sim"], TRANSLATED_VS_INPUT),
        translated_classical_vs_classical=differences(judged["translated_classical"], judged["classical"],
                                                      TRANSLATED_VS_INPUT),
        per_slice=per_slice,
        judge_labels=predictions,
    )
