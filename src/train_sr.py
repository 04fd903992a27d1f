"""DVC stage `train_sr`: SRResNet (PSNR phase) then SRGAN (GAN phase) on prepared MRI slices."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path

import torch
from dvclive import Live

from src.checksum import sha256
from src.config import ConfigError, Params, as_dict, fingerprint, load_params
from src.data.prepared import PREPARED, load_meta, load_split
from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features
from src.metrics.image_quality import psnr, ssim
from src.models.discriminators import PatchDiscriminator
from src.models.srresnet import SRResNet
from src.pretrained import weight_file
from src.training.batches import paired_crops
from src.training.checkpoint import TrainState, save_weights
from src.training.loop import GeneratorState, LoopSettings, NonFiniteLossError, fit, trim_metrics, try_resume
from src.training.runtime import make_runtime, seed_everything
from src.training.samples import grid
from src.training.sr_steps import SRGanSettings, ema_decay_at, gan_step, psnr_step

OUT = Path("pipeline/train_sr")
WEIGHTS_DIR = Path("pipeline/weights")
SR_DATA = PREPARED / "sr"
DATA_RANGE = 2.0  # model range [-1, 1]
N_SAMPLES = 4
log = logging.getLogger("train_sr")

# Settings that only change how often things are logged or how long phase 2 runs: a
# change to these resumes the run instead of restarting it.
NOT_FINGERPRINTED = ("gan_steps", "log_every", "sample_every", "checkpoint_every")


@torch.no_grad()
def predict(g: torch.nn.Module, lr_img: torch.Tensor, runtime, batch_size: int = 16) -> torch.Tensor:
    """Full-image inference in eval mode; (N, 1, h, w) -> (N, 1, h*s, w*s) on CPU, float32."""
    g.eval()
    outs = []
    for i in range(0, len(lr_img), batch_size):
        with runtime.autocast():
            outs.append(g(runtime.batch(lr_img[i:i + batch_size])).float().cpu())
    g.train()
    return torch.cat(outs)


def validation_scores(name: str, sr_img: torch.Tensor, hr_img: torch.Tensor, scale: int) -> dict[str, float]:
    sr_img = sr_img.clamp(-1, 1)
    return {
        f"val/psnr_db/{name}": psnr(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
        f"val/ssim/{name}": ssim(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
    }


def train(params: Params) -> dict[str, float]:
    cfg, train_cfg = params.train.sr, params.train
    seed_everything(params.seed)
    runtime = make_runtime(train_cfg.device, train_cfg.amp)
    meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    train_data = load_split(SR_DATA / "train.npz", ("lr", "naive", "hr"))
    val_data = load_split(SR_DATA / "val.npz", ("lr", "hr", "naive"))
    if cfg.crop_size > train_data["hr"].shape[-1]:
        raise ConfigError(f"train.sr.crop_size: {cfg.crop_size} is larger than the prepared images "
                          f"({train_data['hr'].shape[-1]} px)")

    vgg_path = weight_file(WEIGHTS_DIR, "vgg19", use="The SR perceptual loss")
    vgg_features, vgg_backbone = build_vgg19_features(str(vgg_path) if vgg_path else None)
    perceptual = runtime.place(VGGPerceptualLoss(vgg_features, cfg.vgg_layers)) if cfg.lambda_percep > 0 else None

    g = runtime.place(SRResNet(scale, degradation, channels=cfg.g_channels, blocks=cfg.g_blocks))
    g_ema = copy.deepcopy(g).requires_grad_(False)
    # The PSNR model (phase 1's EMA weights) lives in the checkpointed state, not only in
    # g_psnr.pt: DVC deletes a stage's outputs before re-running it, and a run resumed in
    # phase 2 must still have it.
    g_psnr = copy.deepcopy(g).requires_grad_(False)
    d = runtime.place(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm))
    opt_g_psnr = torch.optim.Adam(g.parameters(), lr=cfg.lr_psnr, betas=tuple(cfg.betas))
    opt_g_gan = torch.optim.Adam(g.parameters(), lr=cfg.lr_gan, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_gan, betas=tuple(cfg.betas))
    sched_psnr = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g_psnr, T_max=cfg.psnr_steps, eta_min=cfg.lr_psnr * 0.05)
    batches = torch.Generator().manual_seed(params.seed)
    state = TrainState(
        modules={"g": g, "g_ema": g_ema, "g_psnr": g_psnr, "d": d},
        optimizers={"g_psnr": opt_g_psnr, "g_gan": opt_g_gan, "d": opt_d},
        schedulers={"g_psnr": sched_psnr},
        extras={"batches": GeneratorState(batches)},
        phase="psnr",
    )
    run_fingerprint = fingerprint(
        {k: v for k, v in as_dict(cfg).items() if k not in NOT_FINGERPRINTED},
        params.seed, sha256(SR_DATA / "train.npz"), vgg_backbone,
        sorted(state.modules),  # the checkpoint layout: a checkpoint of another layout starts fresh
    )
    checkpoint_path = OUT / "checkpoint" / "last.pt"
    resumed = try_resume(state, checkpoint_path, run_fingerprint, train_cfg.resume)

    total_steps = cfg.psnr_steps + cfg.gan_steps
    sample_lr, sample_hr = val_data["lr"][:N_SAMPLES], val_data["hr"][:N_SAMPLES]
    sample_naive = val_data["naive"][:N_SAMPLES]
    model_meta = {"scale": scale, "degradation": degradation, "channels": cfg.g_channels, "blocks": cfg.g_blocks}

    def sample(step: int):
        current = predict(g_ema, sample_lr, runtime)
        psnr_model = current if state.phase == "psnr" else predict(g_psnr, sample_lr, runtime)
        return grid([sample_lr, sample_naive, psnr_model, current, sample_hr],
                    ["LR", "naive", "PSNR model", f"G_ema ({state.phase})", "HR"])

    def next_batch():
        crops = paired_crops(train_data["lr"], train_data["naive"], train_data["hr"], scale, cfg.crop_size,
                             cfg.batch_size, batches)
        return tuple(runtime.batch(c) for c in crops)

    def psnr_phase_step(step: int) -> dict[str, float]:
        lr_img, naive_img, hr_img = next_batch()
        stats = psnr_step(g, g_ema, opt_g_psnr, lr_img, naive_img, hr_img, ema_decay_at(step, cfg.ema_decay), runtime)
        sched_psnr.step()
        return stats

    gan_settings = SRGanSettings(cfg.gan_loss, cfg.diffaugment, cfg.lambda_pixel, cfg.lambda_percep, cfg.lambda_adv,
                                 cfg.r1_gamma, cfg.label_smoothing)

    def gan_phase_step(step: int) -> dict[str, float]:
        lr_img, naive_img, hr_img = next_batch()
        gan_step_index = step - cfg.psnr_steps
        # Instance noise (Sønderby et al. 2017) is annealed linearly to zero over phase 2.
        noise = cfg.instance_noise * max(0.0, 1.0 - gan_step_index / max(1, cfg.gan_steps))
        return gan_step(g, d, g_ema, opt_g_gan, opt_d, perceptual, lr_img, naive_img, hr_img, gan_settings, noise,
                        ema_decay_at(gan_step_index, cfg.ema_decay), runtime)

    live_dir = OUT / "live"
    with Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False) as live:
        if resumed:
            trim_metrics(live_dir, state.step)
        common = dict(log_every=cfg.log_every, sample_every=cfg.sample_every, checkpoint_every=cfg.checkpoint_every,
                      max_nan_retries=train_cfg.max_nan_retries, resume=train_cfg.resume)
        if state.phase == "psnr":
            fit(state, psnr_phase_step, LoopSettings(total_steps=cfg.psnr_steps, desc="SR psnr phase", **common),
                checkpoint_path, run_fingerprint, live, sample)
            g_psnr.load_state_dict(g_ema.state_dict())
            # Phase 2 starts from the PSNR model's EMA weights (BasicSR: pretrain_network_g = params_ema).
            g.load_state_dict(g_ema.state_dict())
            state.phase = "gan"
        if cfg.gan_steps > 0:
            fit(state, gan_phase_step, LoopSettings(total_steps=total_steps, desc="SR gan phase", **common),
                checkpoint_path, run_fingerprint, live, sample)
        save_weights(OUT / "g_psnr.pt", g_psnr, {**model_meta, "phase": "psnr", "steps": cfg.psnr_steps})
        save_weights(OUT / "g_gan.pt", g_ema, {**model_meta, "phase": "gan", "steps": total_steps,
                                                "vgg_backbone": vgg_backbone})

        scores = {}
        scores.update(validation_scores("naive", val_data["naive"], val_data["hr"], scale))
        scores.update(validation_scores("psnr_model", predict(g_psnr, val_data["lr"], runtime), val_data["hr"], scale))
        scores.update(validation_scores("gan_model", predict(g_ema, val_data["lr"], runtime), val_data["hr"], scale))
        for key, value in scores.items():
            live.summary[key] = value
        live.summary["perceptual_backbone"] = vgg_backbone
        live.summary["device"] = str(runtime.device)
        # dvclive's resume moves its step past the last logged one: report the last trained step.
        live.step = state.step - 1
        live.make_summary()
    resolved = {"seed": params.seed, "train": {k: v for k, v in as_dict(train_cfg).items() if k not in ("cyclegan",)},
                "data_meta": meta, "vgg_backbone": vgg_backbone, "fingerprint": run_fingerprint}
    (OUT / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.train_sr",
        description="Train the super-resolution models. Reads data/prepared/sr/{train,val}.npz and meta.json, "
        "pipeline/weights/ (VGG19 for the perceptual loss) and params.yaml (seed, train.device/amp/resume/"
        "max_nan_retries, train.sr). Writes pipeline/train_sr/g_psnr.pt (PSNR phase, EMA), g_gan.pt (GAN phase, "
        "EMA), config.json, checkpoint/last.pt (full state for resume) and live/ (dvclive metrics, loss plots, "
        "sample grids LR | naive | PSNR model | GAN | HR).",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        scores = train(load_params(args.params))
    except (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for key, value in scores.items():
        log.info("%s = %.4f", key, value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
