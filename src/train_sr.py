"""DVC stage `train_sr`: SRResNet (PSNR phase) then SRGAN (GAN phase) on prepared MRI slices.

Train the super-resolution models. Reads data/prepared/sr/{train,val}/ and meta.json,
pipeline/weights/ (VGG19 for the perceptual loss) and params.yaml (seed, data.train_fraction,
train.device/amp/resume/max_nan_retries, train.sr). Writes pipeline/train_sr/g_psnr.pt (PSNR phase,
EMA), g_gan.pt (GAN phase, EMA), config.json, checkpoint/last.pt (full state for resume) and live/
(dvclive metrics.json summary, loss plots, sample grids LR | naive | PSNR model | GAN | HR).
"""

from __future__ import annotations

import copy
import logging
import math
import sys
from pathlib import Path

import torch

from src.config import ConfigError, Params, SRTrainConfig, as_dict, fingerprint
from src.data.prepared import PREPARED, check_scale, load_meta, open_split, split_digest
from src.data.subset import train_subset
from src.metrics.image_quality import psnr, ssim
from src.models.discriminators import PatchDiscriminator
from src.models.highpass import HighPassDiscriminator
from src.models.srresnet import SRResNet
from src.pretrained import perceptual_loss
from src.stage import run_stage
from src.training.checkpoint import TrainState, save_weights
from src.training.data import BatchStream, SliceCrops, monitoring_slices, paired_crop
from src.training.distributed import from_environment, seed_rank_streams, shutdown
from src.training.inference import predict
from src.training.loop import LoopSettings, NonFiniteLossError
from src.training.provenance import META_KEY, sr_provenance
from src.training.run import training_run
from src.training.runtime import adam_options, make_runtime, seed_everything
from src.training.samples import grid
from src.training.sr_steps import (SRBatch, SRCritics, SRGanSettings, SRNets, SROptimizers, ema_decay_at, gan_step,
                                   psnr_step)

OUT, SR_DATA = Path("pipeline/train_sr"), PREPARED / "sr"
DATA_RANGE = 2.0  # model range [-1, 1]
# Settings that only change how often things are logged or how long phase 2 runs: a
# change to these resumes the run instead of restarting it.
NOT_FINGERPRINTED = ("gan_steps", "log_every", "sample_every", "checkpoint_every")
log = logging.getLogger(__name__)


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float = 0.05):
    """lr factor at scheduler step t: linear warm-up to 1 over `warmup_steps`, then cosine decay to `floor`."""
    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        progress = min(1.0, (t - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def uses_data_consistency(requested: bool, degradation: str) -> bool:
    """train.sr.data_consistency applies to k-space degradation only; for bicubic it is skipped, loudly."""
    if requested and degradation != "kspace":
        log.warning("train.sr.data_consistency is ignored: it projects onto measured k-space, and the data's "
                    "degradation is %r (no exact projection); the generator is trained without it", degradation)
        return False
    return requested


def validation_scores(name: str, sr_img: torch.Tensor, hr_img: torch.Tensor, scale: int) -> dict[str, float]:
    sr_img = sr_img.clamp(-1, 1)
    return {f"val/psnr_db/{name}": psnr(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
            f"val/ssim/{name}": ssim(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item()}


def discriminator(cfg: SRTrainConfig) -> torch.nn.Module:
    """The PatchGAN D, behind a high-pass front end when train.sr.d_highpass_sigma > 0."""
    d = PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)
    return HighPassDiscriminator(d, cfg.d_highpass_sigma) if cfg.d_highpass_sigma > 0 else d


def train(params: Params, out: Path = OUT) -> dict[str, float]:
    cfg, train_cfg = params.train.sr, params.train
    dist = from_environment(train_cfg.device)
    seed_everything(params.seed)  # the same initial weights on every rank
    runtime = make_runtime(train_cfg.device, train_cfg.amp, dist.local_rank)
    meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    data = open_split(SR_DATA / "train", ("lr", "naive", "hr"))  # memory maps: batches read their own slices
    check_scale(SR_DATA / "meta.json", SR_DATA / "train", data["lr"].shape, data["hr"].shape, scale)
    subset = train_subset(len(data["hr"]), params.data.train_fraction, params.seed)
    if params.data.train_fraction < 1:
        log.info("data.train_fraction %.3g: training on %d of the train slices", params.data.train_fraction, len(subset))
    data_consistency = uses_data_consistency(cfg.data_consistency, degradation)
    val = monitoring_slices(SR_DATA / "val", ("lr", "hr", "naive"))
    if cfg.crop_size > data["hr"].shape[-1]:
        raise ConfigError(f"train.sr.crop_size: {cfg.crop_size} is larger than the prepared images "
                          f"({data['hr'].shape[-1]} px)")
    stream = BatchStream(SliceCrops(data, paired_crop(scale, cfg.crop_size), params.seed, subset, str(SR_DATA / "train")), cfg.batch_size,
                         dist, params.seed, train_cfg.num_workers, "train.sr.batch_size")
    settings = SRGanSettings(gan_loss=cfg.gan_loss, policy=cfg.diffaugment, lambda_pixel=cfg.lambda_pixel,
                             lambda_percep=cfg.lambda_percep, lambda_adv=cfg.lambda_adv, r1_gamma=cfg.r1_gamma,
                             label_smoothing=cfg.label_smoothing)
    perceptual, vgg_backbone = perceptual_loss("pipeline/weights", cfg.vgg_layers, "The SR perceptual loss")
    critics = SRCritics(runtime.place(perceptual) if settings.lambda_percep > 0 else None, settings)
    g = runtime.place(SRResNet(scale, degradation, channels=cfg.g_channels, blocks=cfg.g_blocks,
                               data_consistency=data_consistency))
    d = runtime.place(discriminator(cfg))
    nets = SRNets(g=dist.wrap(g, runtime.device), g_ema=copy.deepcopy(g).requires_grad_(False),
                  d=dist.wrap(d, runtime.device))
    # The PSNR model (phase 1's EMA weights) lives in the checkpointed state, not only in
    # g_psnr.pt: DVC deletes a stage's outputs before re-running it, and a run resumed in
    # phase 2 must still have it.
    g_psnr = copy.deepcopy(g).requires_grad_(False)
    opt_psnr = torch.optim.Adam(g.parameters(), lr=cfg.lr_psnr, betas=cfg.betas, **adam_options())
    optimizers = SROptimizers(
        g=torch.optim.Adam(g.parameters(), lr=cfg.lr_gan, betas=cfg.betas, **adam_options()),
        d=torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas, **adam_options()))
    sched_psnr = torch.optim.lr_scheduler.LambdaLR(opt_psnr, warmup_cosine(cfg.warmup_steps, cfg.psnr_steps))
    seed_rank_streams(params.seed, dist.rank)  # each rank's own augmentation and instance-noise draws
    # The unwrapped networks: a checkpoint has the same names with or without DDP.
    state = TrainState(modules={"g": g, "g_ema": nets.g_ema, "g_psnr": g_psnr, "d": d},
                       optimizers={"g_psnr": opt_psnr, "g_gan": optimizers.g, "d": optimizers.d},
                       schedulers={"g_psnr": sched_psnr}, phase="psnr")
    run_fingerprint = fingerprint({k: v for k, v in as_dict(cfg).items() if k not in NOT_FINGERPRINTED},
                                  params.seed, split_digest(SR_DATA / "train"), subset.tolist(), vgg_backbone, runtime.amp,
                                  runtime.device.type,  # a change of precision or device starts fresh
                                  sorted(state.modules))  # the checkpoint layout: another layout starts fresh

    def sample():
        current = predict(nets.g_ema, val["lr"][:4], runtime)
        psnr_model = current if state.phase == "psnr" else predict(g_psnr, val["lr"][:4], runtime)
        return grid([val["lr"][:4], val["naive"][:4], psnr_model, current, val["hr"][:4]],
                    ["LR", "naive", "PSNR model", f"G_ema ({state.phase})", "HR"])

    def next_batch(step: int) -> SRBatch:
        return SRBatch(*(runtime.batch(c) for c in stream.batch(step)))

    def psnr_phase_step(step: int) -> dict[str, float]:
        stats = psnr_step(nets, opt_psnr, next_batch(step), runtime, ema_decay=ema_decay_at(step, cfg.ema_decay))
        sched_psnr.step()
        return stats

    def gan_phase_step(step: int) -> dict[str, float]:
        gan_step_index = step - cfg.psnr_steps
        # Instance noise (Sønderby et al. 2017) is annealed linearly to zero over phase 2.
        noise = cfg.instance_noise * max(0.0, 1.0 - gan_step_index / max(1, cfg.gan_steps))
        return gan_step(nets, optimizers, critics, next_batch(step), settings, runtime, instance_noise=noise,
                        ema_decay=ema_decay_at(gan_step_index, cfg.ema_decay))

    def loop(total_steps: int, desc: str) -> LoopSettings:
        return LoopSettings(total_steps=total_steps, log_every=cfg.log_every, sample_every=cfg.sample_every,
                            checkpoint_every=cfg.checkpoint_every, max_nan_retries=train_cfg.max_nan_retries, desc=desc)

    resolved = {"seed": params.seed, "train": {k: v for k, v in as_dict(train_cfg).items() if k != "cyclegan"},
                "data_meta": meta, "train_fraction": params.data.train_fraction, "train_slices": subset.tolist(),
                "data_consistency": data_consistency, "vgg_backbone": vgg_backbone, "world_size": dist.world_size}
    with training_run(out, state, run_fingerprint, train_cfg.resume, resolved, runtime, cfg.psnr_steps + cfg.gan_steps,
                      dist, params.seed) as run:
        if state.phase == "psnr":
            run.fit(psnr_phase_step, loop(cfg.psnr_steps, "SR psnr phase"), sample)
            g_psnr.load_state_dict(nets.g_ema.state_dict())
            # Phase 2 starts from the PSNR model's EMA weights (BasicSR: pretrain_network_g = params_ema).
            g.load_state_dict(nets.g_ema.state_dict())
            state.phase = "gan"
        if cfg.gan_steps > 0:
            run.fit(gan_phase_step, loop(cfg.psnr_steps + cfg.gan_steps, "SR gan phase"), sample)
        if not dist.is_main:
            return {}
        model_meta = {"scale": scale, "degradation": degradation, "channels": cfg.g_channels, "blocks": cfg.g_blocks,
                      "data_consistency": data_consistency, META_KEY: sr_provenance(params).as_meta()}
        save_weights(out / "g_psnr.pt", g_psnr, {**model_meta, "phase": "psnr", "steps": cfg.psnr_steps})
        save_weights(out / "g_gan.pt", nets.g_ema, {**model_meta, "phase": "gan", "vgg_backbone": vgg_backbone,
                                                     "steps": cfg.psnr_steps + cfg.gan_steps})
        for name, sr_img in (("naive", val["naive"]), ("psnr_model", predict(g_psnr, val["lr"], runtime.fp32())),
                             ("gan_model", predict(nets.g_ema, val["lr"], runtime.fp32()))):
            run.summary.update(validation_scores(name, sr_img, val["hr"], scale))
    return run.summary


def main(argv: list[str] | None = None) -> int:
    try:
        return run_stage("train_sr", __doc__, train, argv, expected=(NonFiniteLossError,))
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
