"""The one training loop: steps, logging, samples, checkpoint/resume and the NaN guard.

The GAN algorithm itself lives in a step function (`sr_steps.py`, `cyclegan_step.py`);
this loop only schedules it, so both families resume, log and recover the same way.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from src.training.checkpoint import (CheckpointError, TrainState, load_checkpoint, restore, rng_state, save_checkpoint,
                                     set_rng_state, snapshot)
from src.training.distributed import SINGLE, Distributed, seed_rank_streams

log = logging.getLogger(__name__)

StepFn = Callable[[int], dict[str, float]]
SampleFn = Callable[[], np.ndarray]


class NonFiniteLossError(RuntimeError):
    """Training kept producing NaN/Inf losses after the allowed roll-backs."""


class GeneratorState:
    """Adapter so a torch.Generator (batch sampling) is checkpointed with the rest."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


@dataclass(frozen=True)
class LoopSettings:
    total_steps: int
    log_every: int
    sample_every: int
    checkpoint_every: int
    max_nan_retries: int
    desc: str


def scale_learning_rates(state: TrainState, factor: float) -> None:
    """Scale every optimiser's lr, and the schedulers' base lrs so the change survives `step()`."""
    for optimizer in state.optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
    for scheduler in state.schedulers.values():
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def trim_metrics(live_dir: Path, first_dropped_step: int) -> None:
    """Drop logged rows at or after `first_dropped_step` (they are re-run after a resume).

    A kill -9 can land while dvclive is writing: its summary (`metrics.json`, rewritten at
    every log step, not atomically) may be empty or cut, and a TSV may end in half a row.
    dvclive's own resume would die on the summary with a bare JSONDecodeError, so a cut
    summary is removed (the next log step rewrites it) and cut rows are dropped.
    """
    summary = live_dir / "metrics.json"
    if summary.exists():
        try:
            json.loads(summary.read_text())
        except ValueError:
            log.warning("%s was cut short by an interrupted write; dropping it (rewritten at the next log step)",
                        summary)
            summary.unlink()
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows:
            continue
        header, body = rows[0], rows[1:]
        step_col = header.index("step")
        kept = [r for r in body if _whole_row(r, len(header)) and int(r[step_col]) < first_dropped_step]
        with open(tsv, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows([header, *kept])


def _whole_row(row: list[str], width: int) -> bool:
    """A row every column of which was written and parses as a number."""
    if len(row) != width:
        return False
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def try_resume(state: TrainState, checkpoint_path: Path, fingerprint: str, resume: bool,
               stage: str = "training", dist: Distributed = SINGLE, seed: int = 0) -> bool:
    """Load the checkpoint when resuming is allowed and its params fingerprint matches.

    A checkpoint with the right fingerprint whose state does not fit `state` (the code of a
    network changed, say) is a CheckpointError naming the file, the stage and the two ways out.
    Each rank takes its own RNG states from a checkpoint of the same world size; from another
    world size (a single-process checkpoint resumed under DDP, or the other way round) the
    networks, optimisers and step carry over and the ranks' RNG streams are re-derived from
    (seed, rank, step).
    """
    if not checkpoint_path.exists():
        return False
    if not resume:
        log.info("train.resume is false: ignoring %s and starting fresh", checkpoint_path)
        return False
    checkpoint = load_checkpoint(checkpoint_path)
    if not isinstance(checkpoint, dict) or not {"fingerprint", "state"} <= set(checkpoint):
        raise CheckpointError(f"{checkpoint_path}: not a training checkpoint of this project (no fingerprint and "
                              f"state); delete it or set train.resume: false")
    if checkpoint["fingerprint"] != fingerprint:
        log.info("training params or data changed since %s was written: starting fresh", checkpoint_path)
        return False
    try:
        state.load_state_dict(checkpoint["state"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        reason = " ".join(line.strip() for line in str(err).strip().splitlines()[:2]) or type(err).__name__
        raise CheckpointError(
            f"{checkpoint_path}: the {stage} checkpoint does not fit the networks of this code "
            f"({type(err).__name__}: {reason}); the code changed since it was written: delete it to start fresh, "
            f"or set train.resume: false") from None
    rank_rng = checkpoint.get("rank_rng") or [checkpoint["state"]["rng"]]
    if len(rank_rng) == dist.world_size:
        set_rng_state(rank_rng[dist.rank])
    else:
        seed_rank_streams(seed, dist.rank, state.step)
        log.info("%s was written by %d process(es), this run has %d: RNG streams re-derived from seed, rank and step",
                 checkpoint_path, len(rank_rng), dist.world_size)
    log.info("resuming from %s at step %d (phase %r)", checkpoint_path, state.step, state.phase)
    return True


def fit(
    state: TrainState,
    step_fn: StepFn,
    settings: LoopSettings,
    checkpoint_path: Path,
    fingerprint: str,
    live,
    sample_fn: SampleFn | None = None,
    dist: Distributed = SINGLE,
) -> TrainState:
    """Run `step_fn(step)` from `state.step` to `settings.total_steps`.

    `step_fn` returns a stats dict ({"d/adv": ..., "g/percep": ...}); stats are averaged
    over `log_every` steps (and over ranks) and logged to dvclive at the last step of each
    window. A non-finite stat rolls the state back to the last good snapshot, halves the
    learning rates and retries; after `max_nan_retries` roll-backs it raises
    NonFiniteLossError. Under DDP the roll-back is decided collectively (a NaN on any rank
    rolls every rank back), and only rank 0 (`live` is None elsewhere) logs, samples and
    writes checkpoints; every rank takes part in gathering the RNG states a checkpoint holds.
    """
    last_good = snapshot(state)
    retries = 0
    window: dict[str, list[float]] = defaultdict(list)
    bar = tqdm(total=settings.total_steps, initial=state.step, desc=settings.desc, dynamic_ncols=True,
               disable=not dist.is_main)
    # The loop's own speed, logged apart from the stage's start-up (data checks, fingerprints, networks) and its
    # final validation: what benchmarks/scale.py compares across cohort sizes.
    first_step, started = state.step, time.perf_counter()
    try:  # the bar is closed on errors too, so the stage's `error:` line starts a line of its own
        while state.step < settings.total_steps:
            step = state.step
            stats = step_fn(step)
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if dist.any_rank(bool(bad)):
                bad = bad or ["losses on another rank"]
                retries += 1
                if retries > settings.max_nan_retries:
                    raise NonFiniteLossError(
                        f"{settings.desc}: non-finite {', '.join(bad)} at step {step} after "
                        f"{settings.max_nan_retries} roll-backs with halved learning rates; lower the learning rate "
                        "or loss weights")
                restore(state, last_good)
                scale_learning_rates(state, 0.5)
                last_good = snapshot(state)
                window.clear()
                log.warning("non-finite %s at step %d: rolled back to step %d and halved the learning rates "
                            "(retry %d/%d)", ", ".join(bad), step, state.step, retries, settings.max_nan_retries)
                if live is not None:
                    live.log_metric("train/nan_rollbacks", retries, plot=False)
                bar.n = state.step
                bar.refresh()
                continue
            state.step = step + 1
            bar.update(1)
            for key, value in stats.items():
                window[key].append(value)
            done = state.step == settings.total_steps
            if state.step % settings.log_every == 0 or done:
                rank_means = dist.gather_objects({k: float(np.mean(v)) for k, v in window.items()})
                means = {k: float(np.mean([m[k] for m in rank_means])) for k in rank_means[0]}
                if live is not None:
                    live.step = step
                    for key, value in means.items():
                        live.log_metric(key, value)
                    live.make_summary()
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
                window.clear()
            if live is not None and sample_fn is not None and (state.step % settings.sample_every == 0 or done):
                # The step in the file name gives DVC/Studio an image slider over training.
                live.log_image(f"samples/{state.step:06d}.png", sample_fn())
            if state.step % settings.checkpoint_every == 0 or done:
                rank_rng = dist.gather_objects(rng_state())
                if dist.is_main:
                    save_checkpoint(checkpoint_path, state, fingerprint, rank_rng if dist.enabled else None)
                last_good = snapshot(state)
    finally:
        bar.close()
    steps_run, loop_s = state.step - first_step, time.perf_counter() - started
    if steps_run:
        log.info("%s: %d steps in %.2f s of training loop (%.2f steps/s)", settings.desc, steps_run, loop_s,
                 steps_run / loop_s)
    return state
