"""DVC stage `train_cyclegan`: sim-to-real CycleGAN with VGG content and semantic-consistency losses."""

from __future__ import annotations

import argparse
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
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.models.segmenter import build_unet
from src.pretrained import weight_file
from src.training.batches import random_crops
from src.training.checkpoint import TrainState, load_weights, save_weights
from src.training.cyclegan_step import CycleGANNets, CycleGANWeights, cyclegan_step
from src.training.gan_utils import ImagePool
from src.training.loop import GeneratorState, LoopSettings, NonFiniteLossError, fit, trim_metrics, try_resume
from src.training.runtime import make_runtime, seed_everything
from src.training.samples import grid, overlay_labels
from src.training.segmentation import dice_report, predict_labels

OUT = Path("pipeline/train_cyclegan")
WEIGHTS_DIR = Path("pipeline/weights")
SIM2REAL = PREPARED / "sim2real"
SEGMENTER_FILE = Path("pipeline/train_segmenter/segmenter.pt")
N_SAMPLES = 4
NOT_FINGERPRINTED = ("log_every", "sample_every", "checkpoint_every")
log = logging.getLogger("train_cyclegan")


def load_segmenter(path: Path) -> tuple[torch.nn.Module, dict]:
    """The frozen segmenter of `train_segmenter` (eval mode, no grad to its weights)."""
    blob = load_weights(path)
    meta = blob["meta"]
    model, _ = build_unet(meta["encoder"], meta["encoder_depth"], meta["decoder_channels"], meta["n_classes"], None)
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False), meta


@torch.no_grad()
def translate(g: torch.nn.Module, images: torch.Tensor, runtime, batch_size: int = 16) -> torch.Tensor:
    g.eval()
    out = []
    for i in range(0, len(images), batch_size):
        with runtime.autocast():
            out.append(g(runtime.batch(images[i:i + batch_size])).float().cpu())
    g.train()
    return torch.cat(out)


def linear_decay(steps: int, decay_start: int):
    """Constant lr until `decay_start`, then linear to 0 at `steps` (CycleGAN schedule)."""
    def factor(step: int) -> float:
        return 1.0 - max(0, step - decay_start) / max(1, steps - decay_start)
    return factor


def train(params: Params) -> dict[str, float]:
    cfg, train_cfg = params.train.cyclegan, params.train
    seed_everything(params.seed)
    runtime = make_runtime(train_cfg.device, train_cfg.amp)
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    train_data = load_split(SIM2REAL / "train.npz", ("sim", "sim_labels", "real"))
    val_data = load_split(SIM2REAL / "val.npz", ("sim", "sim_labels", "real"))
    size = train_data["sim"].shape[-1]
    if cfg.crop_size > size:
        raise ConfigError(f"train.cyclegan.crop_size: {cfg.crop_size} is larger than the prepared images ({size} px)")

    weights = CycleGANWeights(train_cfg.lambda_adv, train_cfg.lambda_cycle, train_cfg.lambda_identity,
                              train_cfg.lambda_percep, train_cfg.lambda_semantic)
    perceptual, vgg_backbone = None, "unused"
    if weights.percep > 0:
        vgg_path = weight_file(WEIGHTS_DIR, "vgg19", use="The CycleGAN perceptual content loss")
        vgg_features, vgg_backbone = build_vgg19_features(str(vgg_path) if vgg_path else None)
        perceptual = runtime.place(VGGPerceptualLoss(vgg_features, cfg.vgg_layers))
    # One frozen segmenter: the semantic loss (when its weight is > 0), sample overlays, val Dice.
    segmenter, segmenter_meta = load_segmenter(SEGMENTER_FILE)
    segmenter = runtime.place(segmenter)

    nets = CycleGANNets(
        g_sim2real=runtime.place(ResnetGenerator(1, cfg.g_channels, cfg.g_blocks, cfg.residual)),
        g_real2sim=runtime.place(ResnetGenerator(1, cfg.g_channels, cfg.g_blocks, cfg.residual)),
        d_real=runtime.place(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)),
        d_sim=runtime.place(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)),
    )
    betas = tuple(cfg.betas)
    # One optimiser for both generators and one for both discriminators, as junyanz.
    opt_g = torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], lr=cfg.lr, betas=betas)
    schedule = linear_decay(cfg.steps, cfg.decay_start)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, schedule)
    batches = torch.Generator().manual_seed(params.seed)
    pool_real = ImagePool(cfg.pool_size, generator=torch.Generator().manual_seed(params.seed + 1))
    pool_sim = ImagePool(cfg.pool_size, generator=torch.Generator().manual_seed(params.seed + 2))
    state = TrainState(
        modules={"g_sim2real": nets.g_sim2real, "g_real2sim": nets.g_real2sim, "d_real": nets.d_real, "d_sim": nets.d_sim},
        optimizers={"g": opt_g, "d": opt_d},
        schedulers={"g": sched_g, "d": sched_d},
        extras={"batches": GeneratorState(batches), "pool_real": pool_real, "pool_sim": pool_sim},
    )
    run_fingerprint = fingerprint(
        {k: v for k, v in as_dict(cfg).items() if k not in NOT_FINGERPRINTED}, as_dict(weights), params.seed,
        sha256(SIM2REAL / "train.npz"), sha256(SEGMENTER_FILE), vgg_backbone,
    )
    checkpoint_path = OUT / "checkpoint" / "last.pt"
    resumed = try_resume(state, checkpoint_path, run_fingerprint, train_cfg.resume)

    sample_sim, sample_real = val_data["sim"][:N_SAMPLES], val_data["real"][:N_SAMPLES]

    def sample(step: int):
        fake_real = translate(nets.g_sim2real, sample_sim, runtime)
        rec_sim = translate(nets.g_real2sim, fake_real, runtime)
        fake_sim = translate(nets.g_real2sim, sample_real, runtime)
        overlay = overlay_labels(fake_real, predict_labels(segmenter, fake_real, runtime))
        return grid([sample_sim, fake_real, rec_sim, overlay, sample_real, fake_sim],
                    ["sim", "fake_real", "rec_sim", "seg(fake_real)", "real", "fake_sim"])

    def step_fn(step: int) -> dict[str, float]:
        sim, sim_labels = random_crops(train_data["sim"], cfg.crop_size, cfg.batch_size, batches, train_data["sim_labels"])
        real, _ = random_crops(train_data["real"], cfg.crop_size, cfg.batch_size, batches)
        stats = cyclegan_step(nets, opt_g, opt_d, pool_real, pool_sim, perceptual,
                              segmenter if weights.semantic > 0 else None,
                              runtime.batch(sim), sim_labels.to(runtime.device), runtime.batch(real),
                              weights, cfg.gan_loss, cfg.diffaugment, runtime)
        sched_g.step()
        sched_d.step()
        return stats

    live_dir = OUT / "live"
    with Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False) as live:
        if resumed:
            trim_metrics(live_dir, state.step)
        settings = LoopSettings(total_steps=cfg.steps, log_every=cfg.log_every, sample_every=cfg.sample_every,
                                checkpoint_every=cfg.checkpoint_every, max_nan_retries=train_cfg.max_nan_retries,
                                resume=train_cfg.resume, desc="CycleGAN")
        fit(state, step_fn, settings, checkpoint_path, run_fingerprint, live, sample)
        meta = {"channels": cfg.g_channels, "blocks": cfg.g_blocks, "residual": cfg.residual, "steps": cfg.steps,
                "vgg_backbone": vgg_backbone}
        save_weights(OUT / "g_sim2real.pt", nets.g_sim2real, {**meta, "direction": "sim2real"})
        save_weights(OUT / "g_real2sim.pt", nets.g_real2sim, {**meta, "direction": "real2sim"})

        # Content check on validation slices: does the frozen segmenter still find the sim labels?
        scores = {}
        scores.update(dice_report("val/segmenter_on_sim", predict_labels(segmenter, val_data["sim"], runtime),
                                  val_data["sim_labels"], class_names))
        fake_real = translate(nets.g_sim2real, val_data["sim"], runtime)
        scores.update(dice_report("val/segmenter_on_fake_real", predict_labels(segmenter, fake_real, runtime),
                                  val_data["sim_labels"], class_names))
        for key, value in scores.items():
            live.summary[key] = value
        live.summary["perceptual_backbone"] = vgg_backbone
        live.summary["device"] = str(runtime.device)
        # dvclive's resume moves its step past the last logged one: report the last trained step.
        live.step = state.step - 1
        live.make_summary()
    resolved = {"seed": params.seed, "train": {k: v for k, v in as_dict(train_cfg).items() if k != "sr"},
                "vgg_backbone": vgg_backbone, "segmenter": segmenter_meta, "fingerprint": run_fingerprint}
    (OUT / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.train_cyclegan",
        description="Train the sim-to-real CycleGAN (g_sim2real, g_real2sim, d_real, d_sim). Reads "
        "data/prepared/sim2real/{train,val}.npz, pipeline/train_segmenter/segmenter.pt (frozen, semantic loss), "
        "pipeline/weights/ (VGG19) and params.yaml (seed, train.device/amp/resume/max_nan_retries, "
        "train.lambda_*, train.cyclegan). Writes pipeline/train_cyclegan/g_sim2real.pt, g_real2sim.pt, "
        "config.json, checkpoint/last.pt (full state for resume) and live/ (dvclive metrics, loss plots, "
        "sample grids).",
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
