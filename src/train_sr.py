"""DVC stage `train_sr`: SRGAN (the GAN phase), starting from the PSNR model of train_sr_psnr.

Train the perceptual super-resolution model: pixel L1 + perceptual (VGG19, or a denoiser trained on the HR
crops) + adversarial loss against a PatchGAN discriminator (DiffAugment on every D call). Reads
pipeline/train_sr_psnr/g_psnr.pt (checked against the prepared data and params it must come from),
data/prepared/sr/{train,val}/ and meta.json,
pipeline/weights/ (VGG19 for the default perceptual loss) and params.yaml (seed, data.train_fraction,
train.device/amp/resume/max_nan_retries, train.sr). Writes pipeline/train_sr/g_gan.pt (EMA weights),
config.json, checkpoint/last.pt (full state for resume) and live/ (dvclive metrics.json summary, loss plots,
sample grids LR | naive | PSNR model | GAN | HR).
"""

from __future__ import annotations

import copy
import logging
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

from src.checksum import sha256
from src.config import Params, SRTrainConfig, as_dict, fingerprint
from src.data.degrade import degrade
from src.data.prepared import split_digest
from src.models.discriminators import PatchDiscriminator
from src.models.highpass import HighPassDiscriminator
from src.models.hr_features import FeaturePerceptualLoss, train_hr_features
from src.pretrained import perceptual_loss
from src.stage import run_stage
from src.training.checkpoint import TrainState, save_weights
from src.training.data import BatchStream
from src.training.d_monitor import auc, balanced_accuracy, discriminator_scores, separation, val_crop_grid
from src.training.distributed import SINGLE, seed_rank_streams, shutdown, unwrap
from src.training.gan_utils import decision_boundary
from src.training.inference import predict
from src.training.loop import NonFiniteLossError
from src.training.provenance import SR_PSNR_KEYS, sr_provenance
from src.training.run import training_run
from src.training.runtime import adam_options
from src.training.samples import grid
from src.training.sr_models import load_sr_generator
from src.training.sr_setup import GAN_OUT, PSNR_OUT, SR_DATA, SRSetup, loop_settings, sr_setup, validation_scores
from src.training.sr_steps import SRCritics, SRGanSettings, SRNets, SROptimizers, ema_decay_at, gan_step

OUT, PSNR_MODEL = GAN_OUT, PSNR_OUT / "g_psnr.pt"
log = logging.getLogger(__name__)
# Settings that only change how often things are logged or how long the phase runs: a change to these
# resumes the run instead of restarting it. The PSNR phase's own keys reach this run through its model's digest.
NOT_FINGERPRINTED = ("gan_steps", "log_every", "d_val_every", "sample_every", "checkpoint_every", *SR_PSNR_KEYS)


def discriminator(cfg: SRTrainConfig) -> torch.nn.Module:
    """The PatchGAN D, behind a high-pass front end when train.sr.d_highpass_sigma > 0 (compressed by asinh when
    train.sr.d_highpass_compress > 0)."""
    d = PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)
    if cfg.d_highpass_sigma <= 0:
        return d
    return HighPassDiscriminator(d, cfg.d_highpass_sigma, compress=cfg.d_highpass_compress)


def perceptual_network(cfg: SRTrainConfig, setup: SRSetup, seed: int) -> tuple[nn.Module, str]:
    """The perceptual loss of train.sr.perceptual_network and the name of its backbone (recorded in the model's
    meta, config.json and evaluate's metrics): VGG19 (ImageNet weights, or the logged random-init fallback), or
    the denoising autoencoder trained here on the HR train crops (src/models/hr_features.py)."""
    if cfg.perceptual_network == "vgg19":
        return perceptual_loss("pipeline/weights", cfg.vgg_layers, "The SR perceptual loss")
    # One stream of whole global batches for every rank (SINGLE), from the PSNR phase's first steps, so every
    # rank trains the same network from the same seed; its own RNGs leave the run's draws untouched.
    stream = BatchStream(setup.crops, cfg.batch_size, SINGLE, seed, 0, "train.sr.batch_size")
    encoder, losses = train_hr_features(lambda step: stream.batch(step)[2], cfg.hr_denoiser_steps, seed,
                                        setup.runtime.device)
    log.info("train.sr.perceptual_network hr_denoiser: %d steps on the HR train crops, restoration L1 %.4f -> %.4f",
             cfg.hr_denoiser_steps, losses["first_l1"], losses["last_l1"])
    return FeaturePerceptualLoss(encoder), f"hr_denoiser_{cfg.hr_denoiser_steps}steps"


def train(params: Params, out: Path = OUT, psnr_model: Path = PSNR_MODEL) -> dict[str, float]:
    cfg, train_cfg = params.train.sr, params.train
    setup = sr_setup(params)
    runtime, dist, val = setup.runtime, setup.dist, setup.val
    settings = SRGanSettings(gan_loss=cfg.gan_loss, policy=cfg.diffaugment, lambda_pixel=cfg.lambda_pixel,
                             lambda_percep=cfg.lambda_percep, lambda_adv=cfg.lambda_adv, r1_gamma=cfg.r1_gamma,
                             label_smoothing=cfg.label_smoothing, lambda_consistency=cfg.lambda_consistency)
    perceptual, perceptual_backbone = (perceptual_network(cfg, setup, params.seed) if settings.lambda_percep > 0
                                       else (None, "unused"))
    critics = SRCritics(runtime.place(perceptual) if perceptual is not None else None, settings,
                        degrade=partial(degrade, scale=setup.scale, degradation=setup.degradation))
    d = runtime.place(discriminator(cfg))
    # Phase 2 starts from the PSNR model's EMA weights (BasicSR: pretrain_network_g = params_ema); a model
    # trained on other data or other PSNR-phase params is refused, naming the file and `dvc repro train_sr_psnr`.
    g_psnr = load_sr_generator(psnr_model, setup.scale, setup.degradation, "psnr",
                               expected=sr_provenance(params, "psnr"))
    psnr_digest = sha256(psnr_model)
    g = runtime.place(setup.generator(cfg, "gan"))
    g.load_state_dict(g_psnr.state_dict())
    g_psnr = runtime.place(g_psnr)
    nets = SRNets(g=dist.wrap(g, runtime.device), g_ema=copy.deepcopy(g).requires_grad_(False),
                  d=dist.wrap(d, runtime.device))
    optimizers = SROptimizers(
        g=torch.optim.Adam(g.parameters(), lr=cfg.lr_gan, betas=cfg.betas, **adam_options()),
        d=torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas, **adam_options()))
    seed_rank_streams(params.seed, dist.rank)  # each rank's own augmentation and instance-noise draws
    # The unwrapped networks: a checkpoint has the same names with or without DDP. The step count goes on from
    # the PSNR phase's: batches are addressed by global step, as in one run of both phases.
    state = TrainState(modules={"g": g, "g_ema": nets.g_ema, "d": d},
                       optimizers={"g_gan": optimizers.g, "d": optimizers.d}, step=cfg.psnr_steps, phase="gan")
    run_fingerprint = fingerprint({k: v for k, v in as_dict(cfg).items() if k not in NOT_FINGERPRINTED},
                                  params.seed, split_digest(SR_DATA / "train"), setup.subset.tolist(),
                                  perceptual_backbone,
                                  psnr_digest,  # another PSNR model starts the GAN phase fresh
                                  runtime.amp, runtime.device.type,  # a change of precision or device starts fresh
                                  sorted(state.modules))  # the checkpoint layout: another layout starts fresh
    total_steps = cfg.psnr_steps + cfg.gan_steps

    def sample():
        return grid([val["lr"][:4], val["naive"][:4], predict(g_psnr, val["lr"][:4], runtime),
                     predict(nets.g_ema, val["lr"][:4], runtime), val["hr"][:4]],
                    ["LR", "naive", "PSNR model", "G_ema (gan)", "HR"])

    # D's health in the game (src/training/d_monitor.py): every rank scores the same crops with the same weights,
    # so the logged value is the same on each.
    monitor_crops = val_crop_grid({k: runtime.batch(v) for k, v in val.items()}, setup.scale, cfg.crop_size)
    boundary = decision_boundary(cfg.gan_loss)
    last_scoring: dict[int, tuple] = {}   # {step after it: (real, fake)}: the summary reuses one made at the end

    def step_fn(step: int) -> dict[str, float]:
        gan_step_index = step - cfg.psnr_steps
        # Instance noise (Sønderby et al. 2017) is annealed linearly to zero over phase 2.
        noise = cfg.instance_noise * max(0.0, 1.0 - gan_step_index / max(1, cfg.gan_steps))
        stats = gan_step(nets, optimizers, critics, setup.batch(step), settings, runtime, instance_noise=noise,
                         ema_decay=ema_decay_at(gan_step_index, cfg.ema_decay))
        if cfg.d_val_every and (gan_step_index + 1) % cfg.d_val_every == 0:
            real, fake = discriminator_scores(unwrap(nets.d), unwrap(nets.g), monitor_crops)
            last_scoring.clear()
            last_scoring[step + 1] = real, fake
            stats.update({"val/d_auc": auc(real, fake), "val/d_accuracy": balanced_accuracy(real, fake, boundary)})
        return stats

    resolved = {"seed": params.seed, "train": {k: v for k, v in as_dict(train_cfg).items() if k != "cyclegan"},
                "psnr_model": {"path": str(psnr_model), "sha256": psnr_digest}, "data_meta": setup.meta,
                "train_fraction": params.data.train_fraction, "train_slices": setup.subset.tolist(),
                "data_consistency": setup.output_layer(cfg, "gan")["data_consistency"],
                "perceptual_backbone": perceptual_backbone, "world_size": dist.world_size}
    with training_run(out, state, run_fingerprint, train_cfg.resume, resolved, runtime, total_steps,
                      dist, params.seed) as run:
        if cfg.gan_steps > 0:
            run.fit(step_fn, loop_settings(cfg, train_cfg, total_steps, "SR gan phase"), sample)
        if not dist.is_main:
            return {}
        save_weights(out / "g_gan.pt", nets.g_ema,
                     setup.model_meta(params, "gan", total_steps, perceptual_backbone=perceptual_backbone))
        for name, sr_img in (("naive", val["naive"]), ("psnr_model", predict(g_psnr, val["lr"], runtime.fp32())),
                             ("gan_model", predict(nets.g_ema, val["lr"], runtime.fp32()))):
            run.summary.update(validation_scores(name, sr_img, val["hr"], setup.scale))
        # D against the G it last played, with intervals over val slices: "clear of chance". Without a GAN phase
        # there was no game, and an untrained D's score would be reported under a name it does not deserve.
        if cfg.d_val_every and cfg.gan_steps > 0:
            scores = (last_scoring.get(total_steps)
                      or discriminator_scores(unwrap(nets.d), unwrap(nets.g), monitor_crops))
            final = separation(*scores, monitor_crops.owner, boundary, params.seed)
            for name in ("auc", "accuracy"):
                run.summary[f"val/d_final/{name}"] = final[name]["value"]
                run.summary[f"val/d_final/{name}_ci95"] = final[name]["ci95"]
    return run.summary


def main(argv: list[str] | None = None) -> int:
    try:
        return run_stage("train_sr", __doc__, train, argv, expected=(NonFiniteLossError,))
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
