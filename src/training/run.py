"""A training stage's plumbing around `fit`: resume by fingerprint, dvclive, summary, resolved config.

Both GAN stages run the same way: build the state, open a `training_run`, `fit` one or
more phases, put validation numbers in `run.summary`; on leaving, the summary is written
with the last trained step (dvclive's resume moves its step one past the last logged one)
and the resolved config beside it.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from dvclive import Live

from src.atomic import write_json
from src.training.checkpoint import CheckpointError, TrainState
from src.training.distributed import SINGLE, Distributed
from src.training.lock import LOCK_NAME, die_with_parent, output_lock
from src.training.loop import LoopSettings, SampleFn, StepFn, fit, trim_metrics, try_resume
from src.training.runtime import Runtime
from src.training.safekeeping import previous_logs_kept


class TrainingRun:
    """One run of a training stage: `fit` its phases, fill `summary`. dvclive opens at the first `fit`, after the
    checks, so a run refused there leaves the previous logs untouched."""

    def __init__(self, state: TrainState, checkpoint_path: Path, fingerprint: str, stage: str, open_live,
                 dist: Distributed = SINGLE):
        self.state, self.checkpoint_path, self.fingerprint, self.stage = state, checkpoint_path, fingerprint, stage
        self.dist = dist
        self.summary: dict[str, Any] = {}
        self._open_live = open_live
        self._live: Live | None = None

    @property
    def live(self) -> Live | None:
        """dvclive on rank 0; None on the other ranks, which write nothing."""
        if self._live is None and self.dist.is_main:
            self._live = self._open_live()
        return self._live

    def fit(self, step_fn: StepFn, settings: LoopSettings, sample_fn: SampleFn | None = None) -> None:
        if self.state.step > settings.total_steps:
            raise self.past_requested_steps(f"past the {settings.total_steps} steps this run asks for")
        fit(self.state, step_fn, settings, self.checkpoint_path, self.fingerprint, self.live, sample_fn, self.dist)

    def check_within(self, total_steps: int) -> None:
        """A resumed state past `total_steps` (every phase of this run) is an error before anything is written."""
        if self.state.step > total_steps:
            raise self.past_requested_steps(f"past the {total_steps} steps of every phase this run trains")

    def past_requested_steps(self, what: str) -> CheckpointError:
        """A checkpoint from a longer run: resuming it would hand out that run's model as this shorter run's result.
        Chosen over a silent fresh start: the user decides whether to retrain (minutes) or raise the step count."""
        return CheckpointError(
            f"{self.checkpoint_path}: the {self.stage} checkpoint is at step {self.state.step}, {what} (was a step "
            f"count such as train.sr.gan_steps lowered after a longer run?); its model is not this run's result. "
            f"Set train.resume: false (or delete it) to train from scratch, or raise the step count to resume it")


def stage_of(out: Path) -> str:
    """The DVC stage writing `out`: pipeline/<stage>[/<item>] -> <stage>."""
    parts = Path(out).parts
    return parts[parts.index("pipeline") + 1] if "pipeline" in parts[:-1] else Path(out).name


@contextmanager
def training_run(out: Path, state: TrainState, fingerprint: str, resume: bool, resolved: dict,
                 runtime: Runtime, total_steps: int, dist: Distributed = SINGLE,
                 seed: int = 0) -> Iterator[TrainingRun]:
    """Resume `state` from `out/checkpoint/last.pt` when allowed and its fingerprint matches; log to `out/live`.

    One trainer per folder: an exclusive lock (`out/checkpoint/.trainer.lock`, src/training/lock.py)
    is held for the whole run, and the process dies with its parent. A checkpoint that does not fit
    the networks, or lies past `total_steps` (every phase this run trains), is an error before anything is
    written: the body saves the models, so a check on leaving would come after they were overwritten.
    A fresh run keeps the previous run's logs until its first checkpoint (src/training/safekeeping.py).
    On success the dvclive summary holds `run.summary` plus what the numbers depend on
    (perceptual backbone, device, bf16), and `resolved` (the params and backbones the run
    used) is written to `out/config.json` with the fingerprint, beside the outputs it explains.

    Under DDP (`dist`) only rank 0 takes the lock and writes; the other ranks read the
    checkpoint (a shared filesystem across nodes), train, and take part in the collectives.
    """
    if not dist.is_main:
        die_with_parent()
        try_resume(state, out / "checkpoint" / "last.pt", fingerprint, resume, stage_of(out), dist, seed)
        run = TrainingRun(state, out / "checkpoint" / "last.pt", fingerprint, stage_of(out), None, dist)
        run.check_within(total_steps)
        yield run
        return
    stage = stage_of(out)
    checkpoint_path = out / "checkpoint" / "last.pt"
    live_dir = out / "live"
    with output_lock(checkpoint_path.parent / LOCK_NAME, stage, out):
        die_with_parent()
        checkpoint_path.with_name(checkpoint_path.name + ".tmp").unlink(missing_ok=True)  # left by a kill -9
        resumed = try_resume(state, checkpoint_path, fingerprint, resume, stage, dist, seed)

        def open_live() -> Live:
            if resumed:  # before dvclive reads its summary back
                trim_metrics(live_dir, state.step)
            return stack.enter_context(Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False))

        run = TrainingRun(state, checkpoint_path, fingerprint, stage, open_live, dist)
        with previous_logs_kept(live_dir, checkpoint_path, fresh=not resumed), ExitStack() as stack:
            run.check_within(total_steps)  # after a killed run's logs are settled, before the body writes models
            yield run
            backbone = resolved.get("perceptual_backbone", resolved.get("vgg_backbone", "unused"))  # SR, CycleGAN
            context = {"perceptual_backbone": backbone, "device": str(runtime.device), "bf16": runtime.amp}
            for key, value in {**run.summary, **context}.items():
                run.live.summary[key] = value
            run.live.step = state.step - 1
            run.live.make_summary()
    write_json(out / "config.json", {**resolved, "fingerprint": fingerprint})
