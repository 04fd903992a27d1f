"""A training stage's plumbing around `fit`: resume by fingerprint, dvclive, summary, resolved config.

Both GAN stages run the same way: build the state, open a `training_run`, `fit` one or
more phases, put validation numbers in `run.summary`; on leaving, the summary is written
with the last trained step (dvclive's resume moves its step one past the last logged one)
and the resolved config beside it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dvclive import Live

from src.atomic import write_json
from src.training.checkpoint import TrainState
from src.training.loop import LoopSettings, SampleFn, StepFn, fit, trim_metrics, try_resume
from src.training.runtime import Runtime


@dataclass
class TrainingRun:
    state: TrainState
    live: Live
    checkpoint_path: Path
    fingerprint: str
    summary: dict[str, Any] = field(default_factory=dict)

    def fit(self, step_fn: StepFn, settings: LoopSettings, sample_fn: SampleFn | None = None) -> None:
        fit(self.state, step_fn, settings, self.checkpoint_path, self.fingerprint, self.live, sample_fn)


@contextmanager
def training_run(out: Path, state: TrainState, fingerprint: str, resume: bool, resolved: dict,
                 runtime: Runtime) -> Iterator[TrainingRun]:
    """Resume `state` from `out/checkpoint/last.pt` when allowed and its fingerprint matches; log to `out/live`.

    On success the dvclive summary holds `run.summary` plus what the numbers depend on
    (perceptual backbone, device, bf16), and `resolved` (the params and backbones the run
    used) is written to `out/config.json` with the fingerprint, beside the outputs it explains.
    """
    checkpoint_path = out / "checkpoint" / "last.pt"
    resumed = try_resume(state, checkpoint_path, fingerprint, resume)
    live_dir = out / "live"
    if resumed:  # before dvclive reads its summary back
        trim_metrics(live_dir, state.step)
    with Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False) as live:
        run = TrainingRun(state, live, checkpoint_path, fingerprint)
        yield run
        context = {"perceptual_backbone": resolved.get("vgg_backbone", "unused"), "device": str(runtime.device),
                   "bf16": runtime.amp}
        for key, value in {**run.summary, **context}.items():
            live.summary[key] = value
        live.step = state.step - 1
        live.make_summary()
    write_json(out / "config.json", {**resolved, "fingerprint": fingerprint})
