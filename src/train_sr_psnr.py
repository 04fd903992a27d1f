"""DVC stage `train_sr_psnr`: SRResNet trained on pixel L1 (phase 1 of SRGAN: the PSNR model).

Train the PSNR-oriented super-resolution model that the GAN phase (stage train_sr) starts from and that
evaluate_sr scores as the PSNR baseline. Reads data/prepared/sr/{train,val}/ and meta.json and params.yaml
(seed, data.train_fraction, train.device/amp/resume/max_nan_retries, the PSNR-phase keys of train.sr).
Writes pipeline/train_sr_psnr/g_psnr.pt (EMA weights), config.json, checkpoint/last.pt (full state for
resume) and live/ (dvclive metrics.json summary, loss plots, sample grids LR | naive | PSNR model | HR).
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch

from src.config import Params, as_dict, fingerprint
from src.data.prepared import split_digest
from src.stage import run_stage
from src.training.checkpoint import TrainState, save_weights
from src.training.distributed import seed_rank_streams, shutdown
from src.training.inference import predict
from src.training.loop import NonFiniteLossError
from src.training.provenance import SR_PSNR_KEYS
from src.training.run import training_run
from src.training.runtime import adam_options
from src.training.samples import grid
from src.training.sr_setup import PSNR_OUT, SR_DATA, loop_settings, sr_setup, validation_scores
from src.training.sr_steps import SRNets, ema_decay_at, psnr_step


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float = 0.05):
    """lr factor at scheduler step t: linear warm-up to 1 over `warmup_steps`, then cosine decay to `floor`."""
    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        progress = min(1.0, (t - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_psnr(params: Params, out: Path = PSNR_OUT) -> dict[str, float]:
    cfg, train_cfg = params.train.sr, params.train
    setup = sr_setup(params)
    runtime, dist, val = setup.runtime, setup.dist, setup.val
    g = runtime.place(setup.generator(cfg, "psnr"))
    # No discriminator in this phase: SRNets.d is never called by psnr_step.
    nets = SRNets(g=dist.wrap(g, runtime.device), g_ema=copy.deepcopy(g).requires_grad_(False), d=None)
    optimizer = torch.optim.Adam(g.parameters(), lr=cfg.lr_psnr, betas=cfg.betas, **adam_options())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.psnr_steps))
    seed_rank_streams(params.seed, dist.rank)
    # The unwrapped networks: a checkpoint has the same names with or without DDP.
    state = TrainState(modules={"g": g, "g_ema": nets.g_ema}, optimizers={"g_psnr": optimizer},
                       schedulers={"g_psnr": scheduler}, phase="psnr")
    sr_keys = as_dict(cfg)
    psnr_cfg = {key: sr_keys[key] for key in SR_PSNR_KEYS}
    run_fingerprint = fingerprint("psnr", psnr_cfg, params.seed, split_digest(SR_DATA / "train"),
                                  setup.subset.tolist(), runtime.amp,
                                  runtime.device.type,  # a change of precision or device starts fresh
                                  sorted(state.modules))  # the checkpoint layout: another layout starts fresh

    def sample():
        current = predict(nets.g_ema, val["lr"][:4], runtime)
        return grid([val["lr"][:4], val["naive"][:4], current, val["hr"][:4]], ["LR", "naive", "G_ema (psnr)", "HR"])

    def step_fn(step: int) -> dict[str, float]:
        stats = psnr_step(nets, optimizer, setup.batch(step), runtime, ema_decay=ema_decay_at(step, cfg.ema_decay))
        scheduler.step()
        return stats

    resolved = {"seed": params.seed, "train": {k: v for k, v in as_dict(train_cfg).items() if k != "cyclegan"},
                "psnr_keys": list(SR_PSNR_KEYS), "data_meta": setup.meta, "train_fraction": params.data.train_fraction,
                "train_slices": setup.subset.tolist(), "data_consistency": setup.data_consistency,
                "world_size": dist.world_size}
    with training_run(out, state, run_fingerprint, train_cfg.resume, resolved, runtime, cfg.psnr_steps,
                      dist, params.seed) as run:
        run.fit(step_fn, loop_settings(cfg, train_cfg, cfg.psnr_steps, "SR psnr phase"), sample)
        if not dist.is_main:
            return {}
        save_weights(out / "g_psnr.pt", nets.g_ema, setup.model_meta(params, "psnr", cfg.psnr_steps))
        for name, sr_img in (("naive", val["naive"]), ("psnr_model", predict(nets.g_ema, val["lr"], runtime.fp32()))):
            run.summary.update(validation_scores(name, sr_img, val["hr"], setup.scale))
    return run.summary


def main(argv: list[str] | None = None) -> int:
    try:
        return run_stage("train_sr_psnr", __doc__, train_psnr, argv, expected=(NonFiniteLossError,))
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
