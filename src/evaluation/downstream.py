"""Downstream value (CyCADA protocol): U-Nets trained on each rendering of the sim labels (raw, classical,
randomised per batch, translated) and on real labels, each with the same recipe, budget and seeds, scored
on real test slices.

Seeds and slices are both resampled (a two-level bootstrap): each resample draws the test
slices with replacement and, independently, as many seeds as were trained, with replacement;
a row's value on it is the mean over the drawn seeds of the pooled Dice on the drawn slices.
Every row uses the same draws, and seed k of every row starts from the same weights, so the
comparisons with sim_only are paired in both slices and seeds.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from src.config import SegmenterConfig
from src.evaluation.dice import dice_columns, dice_counts, dice_statistics
from src.evaluation.intervals import Resamples, Statistic, differences
from src.evaluation.per_slice import slice_rows
from src.evaluation.schema import (DOWNSTREAM_VS_CLASSICAL_ROWS, DOWNSTREAM_VS_RANDOMIZED_ROWS, DOWNSTREAM_VS_SIM_ONLY,
                                   Downstream, DownstreamVsClassical, DownstreamVsRandomized, DownstreamVsSimOnly)
from src.metrics.bootstrap import resample_indices
from src.models.segmenter import build_unet
from src.training.lock import die_with_parent
from src.training.runtime import Runtime, seed_everything
from src.training.segmentation import Render, fit_segmenter, predict_labels

GAP_EPSILON = 1e-6  # oracle and sim_only closer than this: the gap is undefined (NaN)


class TrainingSet(NamedTuple):
    images: torch.Tensor        # (N, 1, H, W) in [-1, 1]; with `render`, only the crops' source
    labels: torch.Tensor        # (N, H, W)
    render: Render | None = None  # domain randomisation: images drawn afresh from each batch's labels


@dataclass(frozen=True)
class DownstreamModels:
    models: dict[str, list[torch.nn.Module]]  # {row: [model per seed]}
    steps_per_segmenter: dict[str, int]       # {row: steps each of its models was trained for}
    encoder_init: str                         # "<encoder>_imagenet" or "<encoder>_random_init"


def downstream_seeds(seed: int, count: int) -> list[int]:
    """The seeds of every row's segmenters: seed, seed + 1, ... (evaluate.downstream_seeds of them)."""
    return [seed + k for k in range(count)]


@dataclass(frozen=True)
class UNetBuilder:
    """`build` for `train_downstream`: a fresh U-Net of the segmenter recipe on runtime's device, and its
    encoder init (ImageNet from `encoder_file`, else random: recorded in metrics.json's backbones).
    A class rather than a closure so that training processes can be sent it."""
    recipe: SegmenterConfig
    n_classes: int
    encoder_file: str | None
    runtime: Runtime

    def __call__(self) -> tuple[torch.nn.Module, str]:
        model, init = build_unet(self.recipe.encoder, self.recipe.encoder_depth, self.recipe.decoder_channels,
                                 self.n_classes, self.encoder_file)
        return self.runtime.place(model), init


def unet_builder(recipe: SegmenterConfig, n_classes: int, encoder_file: str | None,
                 runtime: Runtime) -> UNetBuilder:
    return UNetBuilder(recipe, n_classes, None if encoder_file is None else str(encoder_file), runtime)


def training_processes(setting: int | str, runtime: Runtime, jobs: int) -> int:
    """How many processes train the downstream U-Nets (evaluate.downstream_processes).

    auto: on the CPU one per thread this process was given (torch.get_num_threads(): the cores, or
    OMP_NUM_THREADS), each then with one thread; on a GPU one. A U-Net step at batch 16 on 64 px crops
    is too small to keep two OpenMP threads busy: measured on the 2-core EPYC without bf16, one step on
    2 threads took 0.26 s, two processes of 1 thread each made a step every 0.38-0.41 s each (5.0 steps/s
    against 3.9). A user who runs two experiments at once with OMP_NUM_THREADS=1 each gets one process each.
    """
    if setting == "auto":
        setting = 1 if runtime.device.type != "cpu" else torch.get_num_threads()
    return max(1, min(int(setting), jobs))


def _fit_one(build: Callable[[], tuple[torch.nn.Module, str]], training_set: TrainingSet, recipe: SegmenterConfig,
             steps: int, seed: int, runtime: Runtime, row: str) -> tuple[torch.nn.Module, list[float], str]:
    seed_everything(seed)  # right before `build`: for each seed every row starts from the same weights
    model, init = build()
    images, labels, render = training_set
    losses = fit_segmenter(model, images, labels, recipe, steps, seed, runtime,
                           desc=f"downstream {row} seed {seed}", render=render)
    return model, losses, init


_WORKER: dict = {}  # a training process's share of `train_downstream`'s arguments (set once, by `_start_worker`)


def _start_worker(threads: int, shared: dict) -> None:
    # Workers die with the stage (a SIGTERM or a crash of the parent must not leave them training), and
    # leave Ctrl-C to the parent, which stops them all.
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    if shared["runtime"].device.type == "cpu":
        torch.set_flush_denormal(True)  # as src/training/runtime.py's make_runtime does in the stage itself
    _WORKER.update(shared)


def _fit_in_worker(job: tuple[str, int]) -> tuple[dict[str, np.ndarray], list[float], str]:
    row, seed = job
    w = _WORKER
    model, losses, init = _fit_one(w["build"], w["training_sets"][row], w["recipe"], w["steps"], seed,
                                   w["runtime"], row)
    # numpy, not tensors: plain pickling back, no shared-memory handles that outlive this process's job.
    return {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}, losses, init


def train_downstream(training_sets: dict[str, TrainingSet],
                     build: Callable[[], tuple[torch.nn.Module, str]], recipe: SegmenterConfig, steps: int,
                     seeds: list[int], runtime: Runtime, processes: int = 1) -> DownstreamModels:
    """One fresh U-Net per (row, seed), trained with one recipe and budget.

    training_sets: {row: TrainingSet}. `build` returns an
    untrained U-Net on runtime's device and its encoder init; it is called right after seeding,
    so for each seed every row starts from the same weights and sees the same batch order.
    processes > 1: the (row, seed) models train in that many spawned processes at once, each with
    torch's threads divided between them; every model is the one the same training in this process
    would give with that thread count (each depends only on its seed and training set).
    """
    jobs = [(row, seed) for seed in seeds for row in training_sets]
    if processes > 1:
        threads = max(1, torch.get_num_threads() // processes)
        shared = {"build": build, "training_sets": training_sets, "recipe": recipe, "steps": steps,
                  "runtime": runtime}
        context = torch.multiprocessing.get_context("spawn")  # fork would copy this process's OpenMP pool
        with context.Pool(processes, initializer=_start_worker, initargs=(threads, shared)) as pool:
            results = []
            for state, losses, init in pool.imap(_fit_in_worker, jobs):
                model, init = build()
                model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
                model.eval()
                results.append((model, losses, init))
    else:
        results = [_fit_one(build, training_sets[row], recipe, steps, seed, runtime, row) for row, seed in jobs]
    models: dict[str, list[torch.nn.Module]] = {row: [] for row in training_sets}
    budgets: dict[str, int] = {}
    init = ""
    for (row, _), (model, losses, init) in zip(jobs, results):
        if budgets.setdefault(row, len(losses)) != len(losses):
            raise RuntimeError(f"downstream {row}: seeds trained for different step counts")
        models[row].append(model)
    return DownstreamModels(models, budgets, init)


@dataclass(frozen=True)
class DownstreamResult:
    downstream: Downstream
    vs_sim_only: DownstreamVsSimOnly
    vs_classical: DownstreamVsClassical
    vs_randomized: DownstreamVsRandomized
    per_slice: list[dict]


def seed_average(per_seed: list[Statistic], seed_draws: np.ndarray) -> tuple[Statistic, float]:
    """The mean over seeds and, per resample, the mean over that resample's drawn seeds; plus the std over seeds.

    per_seed: one Statistic per seed on the same slice resamples (B,); seed_draws (B, n_seeds).
    The std is the sample std (ddof 1) of the whole-test-set values, NaN for one seed.
    """
    values = np.array([s.value for s in per_seed])
    resampled = np.take_along_axis(np.stack([s.resampled for s in per_seed], axis=1), seed_draws, axis=1)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return Statistic(float(np.nanmean(values)), np.nanmean(resampled, axis=1), per_seed[0].n), std


Counts = dict[str, tuple[np.ndarray, np.ndarray]]  # {row: (numerators, denominators)}, each (n_seeds, n, C)


def downstream_counts(models: dict[str, list[torch.nn.Module]], real: torch.Tensor, real_labels: torch.Tensor,
                      n_classes: int, runtime: Runtime, batch_size: int) -> Counts:
    """Per-slice Dice counts (src/evaluation/dice.py) of every (row, seed) model on the real test slices.

    The counts are all that scoring needs, so the rows trained by different stages (`baselines`,
    `evaluate_sim2real`) are scored together, paired, from these arrays alone."""
    counts = {}
    for row, row_models in models.items():
        per_seed = [dice_counts(predict_labels(model, real, runtime, batch_size), real_labels, n_classes)
                    for model in row_models]
        counts[row] = (np.stack([num for num, _ in per_seed]), np.stack([den for _, den in per_seed]))
    return counts


def score_downstream(models: dict[str, list[torch.nn.Module]], real: torch.Tensor, real_labels: torch.Tensor,
                     class_names: list[str], seeds: list[int], runtime: Runtime, draws: Resamples, bootstrap_seed: int,
                     batch_size: int) -> DownstreamResult:
    """`score_counts` of the models' `downstream_counts` on the real test slices."""
    return score_counts(downstream_counts(models, real, real_labels, len(class_names), runtime, batch_size),
                        class_names, seeds, draws, bootstrap_seed)


def score_counts(counts: Counts, class_names: list[str], seeds: list[int], draws: Resamples,
                 bootstrap_seed: int) -> DownstreamResult:
    """Dice of every (row, seed) from its per-slice counts, seed-averaged, with the gap closed and
    paired differences to sim_only and to classical. counts: {row: (num, den) (n_seeds, n, C)} for
    every row of schema.DOWNSTREAM_ROWS."""
    seed_draws = resample_indices(len(seeds), len(draws.slices), bootstrap_seed, stream=1)
    rows, std, per_slice = {}, {}, []
    for row, (numerators, denominators) in counts.items():
        if len(numerators) != len(seeds):
            raise ValueError(f"downstream {row}: counts of {len(numerators)} seeds, expected {len(seeds)} ({seeds})")
        per_seed = []
        for seed, num, den in zip(seeds, numerators, denominators):
            per_seed.append(dice_statistics(num, den, class_names, draws.slices))
            per_slice += slice_rows("downstream", row, dice_columns(num, den, class_names), seed)
        averaged = {key: seed_average([s[key] for s in per_seed], seed_draws) for key in per_seed[0]}
        rows[row] = {key: stat for key, (stat, _) in averaged.items()}
        std[row] = {key: s for key, (_, s) in averaged.items()}
    sim_only, oracle = rows["sim_only"]["mean_foreground"], rows["real_oracle"]["mean_foreground"]
    # A fraction of a gap needs a gap: the oracle must beat sim_only with a paired interval clear of 0.
    # Otherwise (a simulator as good as real training data) every fraction is noise over noise: NaN.
    gap_exists = (oracle - sim_only).difference(higher_is_better=True).better is True
    with np.errstate(invalid="ignore", divide="ignore"):
        for row, stats in rows.items():
            gain = stats["mean_foreground"] - sim_only
            gap = gap_exists and abs(oracle.value - sim_only.value) > GAP_EPSILON
            value = gain.value / (oracle.value - sim_only.value) if gap else float("nan")
            gaps = oracle.resampled - sim_only.resampled
            resampled = np.where(gap & (np.abs(gaps) > GAP_EPSILON), gain.resampled / gaps, np.nan)
            stats["gap_closed_fraction"] = Statistic(value, resampled, gain.n)
    return DownstreamResult(
        downstream=Downstream(**{row: {key: stat.estimate(std[row].get(key)) for key, stat in stats.items()}
                                 for row, stats in rows.items()}),
        vs_sim_only=DownstreamVsSimOnly(**{row: differences(rows[row], rows["sim_only"], DOWNSTREAM_VS_SIM_ONLY)
                                           for row in rows if row != "sim_only"}),
        vs_classical=DownstreamVsClassical(**{row: differences(rows[row], rows["classical"], DOWNSTREAM_VS_SIM_ONLY)
                                              for row in DOWNSTREAM_VS_CLASSICAL_ROWS}),
        vs_randomized=DownstreamVsRandomized(**{row: differences(rows[row], rows["randomized"], DOWNSTREAM_VS_SIM_ONLY)
                                                for row in DOWNSTREAM_VS_RANDOMIZED_ROWS}),
        per_slice=per_slice,
    )
