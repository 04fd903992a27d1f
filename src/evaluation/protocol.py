"""The `protocol` section of metrics.json: how every number was computed, in the file beside the numbers."""

from __future__ import annotations

from src.config import EvaluateConfig
from src.evaluation.schema import (BootstrapProtocol, DownstreamProtocol, KIDProtocol, Protocol, SWDProtocol)
from src.metrics.bootstrap import CI_LEVEL

BOOTSTRAP = dict(
    method="percentile (Efron & Tibshirani 1993, Sec. 13.3): 2.5 % and 97.5 % quantiles of the resampled statistic",
    pairing="test slices are resampled with replacement; every method and metric of one test set uses the same "
            "slice indices in each resample, so each difference A - B is a paired bootstrap",
    set_level="SWD, KID and the Fréchet distance are recomputed on the first set_resamples resamples from features "
              "and patch descriptors computed once per image; their interval is the percentile interval shifted by "
              "the resampling bias mean(resamples) - value (duplicate slices inflate set distances); KID leaves "
              "pairs of copies of one slice out of its within-set sums",
    dice="Dice is pooled over all pixels of the resampled slices (sum 2|P∩T| / sum (|P| + |T|)); mean_foreground "
         "is the mean over foreground classes",
    downstream="two-level: each resample also draws the downstream seeds with replacement (the same draws for every "
               "row); a row's value is the mean over the drawn seeds of the pooled Dice on the drawn slices; "
               "*_std is the sample std (ddof 1) over seeds on the whole test set",
    decision="better is true (false) when the 95 % interval of A - B lies entirely on A's (B's) good side of 0, "
             "else 'indistinguishable'",
)
UNCERTAINTY = ("Spearman rank correlation between the map and |output - HR| over the pixels of each slice; "
               "the value is the mean over slices (NaN slices left out)")


def build_protocol(settings: EvaluateConfig, segmenter_recipe: dict, seed: int, n_sr_test: int, n_sim2real_test: int,
                   scale: int, data_range: float, class_names: list[str], feature_space: str, seeds: list[int],
                   steps_per_segmenter: dict[str, int]) -> Protocol:
    # kernel_distance clamps the subset size to the smaller set: with fewer test slices than
    # kid_subset_size every "subset" is the whole set, and a std over subsets would be 0.
    effective = min(settings.kid_subset_size, n_sr_test, n_sim2real_test)
    return Protocol(
        split="test", seed=seed, n_sr_test=n_sr_test, n_sim2real_test=n_sim2real_test, crop_border=scale,
        data_range=data_range, value_range=(-1.0, 1.0), class_names=list(class_names), feature_space=feature_space,
        swd=SWDProtocol(descriptors_per_image=settings.swd_descriptors_per_image, directions=settings.swd_directions),
        kid=KIDProtocol(subsets=settings.kid_subsets, subset_size=settings.kid_subset_size,
                        effective_subset_size=effective,
                        subset_is_whole_set=effective >= min(n_sr_test, n_sim2real_test)),
        bootstrap=BootstrapProtocol(level=CI_LEVEL, resamples=settings.bootstrap_resamples,
                                    set_resamples=settings.bootstrap_set_resamples, seed=seed, **BOOTSTRAP),
        downstream=DownstreamProtocol(steps=settings.downstream_steps, seeds=list(seeds),
                                      steps_per_segmenter=steps_per_segmenter,
                                      # segmenter.steps is train_segmenter's budget, not evaluate's: left out
                                      segmenter_recipe={k: v for k, v in segmenter_recipe.items() if k != "steps"}),
        uncertainty=UNCERTAINTY,
    )
