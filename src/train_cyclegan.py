"""DVC stage `train_cyclegan`: sim-to-real CycleGAN with VGG content and semantic-consistency losses.

Train the sim-to-real CycleGAN (g_sim2real, g_real2sim, d_real, d_sim) from --input: `sim` (the
raw simulator rendering) or `classical` (the same after blur + foreground histogram matching,
src/data/classical.py), one DVC stage per input (train_cyclegan@sim, train_cyclegan@classical).
Reads data/prepared/sim2real/{train,val}/, pipeline/train_segmenter/segmenter.pt (frozen,
semantic loss), pipeline/weights/ (VGG19) and params.yaml (seed, train.device/amp/resume/
max_nan_retries, train.lambda_*, train.cyclegan, data.train_fraction). Writes pipeline/train_cyclegan/<input>/:
g_sim2real.pt, g_real2sim.pt, config.json, checkpoint/last.pt (full state for resume) and live/
(dvclive metrics.json summary, loss plots, sample grids).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

from src.checksum import sha256
from src.config import ConfigError, Params, as_dict, fingerprint
from src.data.prepared import PREPARED, load_meta, open_split, split_digest
from src.data.subset import train_subset
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.pretrained import perceptual_loss
from src.stage import run_stage
from src.training.artifacts import load_segmenter
from src.training.checkpoint import TrainState, save_weights
from src.training.data import BatchStream, SliceCrops, image_crop, monitoring_slices
from src.training.distributed import from_environment, seed_rank_streams, shutdown
from src.training.cyclegan_step import (CycleGANBatch, CycleGANCritics, CycleGANNets, CycleGANOptimizers,
                                        CycleGANSettings, cyclegan_step)
from src.training.gan_utils import ImagePool
from src.training.inference import predict
from src.training.loop import LoopSettings, NonFiniteLossError
from src.training.provenance import META_KEY, segmenter_provenance, translator_provenance
from src.training.run import training_run
from src.training.runtime import adam_options, make_runtime, seed_everything
from src.training.samples import difference_map, grid, overlay_labels
from src.training.segmentation import dice_report, predict_labels

OUT_ROOT, SIM2REAL = Path("pipeline/train_cyclegan"), PREPARED / "sim2real"
INPUTS = ("sim", "classical")  # prepared arrays a translator can start from
SEGMENTER_FILE = Path("pipeline/train_segmenter/segmenter.pt")
NOT_FINGERPRINTED = ("log_every", "sample_every", "checkpoint_every")


def linear_decay(steps: int, decay_start: int):
    """Constant lr until `decay_start`, then linear to 0 at `steps` (CycleGAN schedule)."""
    return lambda step: 1.0 - max(0, step - decay_start) / max(1, steps - decay_start)


def cycle_ramp(warmup_steps: int, delay_steps: int = 0):
    """Weight factor of the cycle loss: 0 until `delay_steps`, then linear to 1 over `warmup_steps`
    (warmup 0: a step from 0 to 1 at the delay).

    Both refiners start at the identity, where the cycle loss is already ~0 and plain L1 charges
    lambda_cycle * |move| for any move at once: the adversarial gradient alone cannot leave the
    start. Ramping the weight lets g_sim2real first move towards the real contrast, and the cycle
    term then ties g_real2sim to it. Across contrasts the move must reverse the tissue order, and
    on the way two tissues pass through one intensity, where no inverse exists: at any cycle
    weight (1 and 2 measured as well as 10) the pair stays at the monotone map. The delay leaves
    the reversal to the adversarial terms alone before the cycle term holds the pair together.
    """
    def factor(step: int) -> float:
        if step < delay_steps:
            return 0.0
        return 1.0 if warmup_steps == 0 else min(1.0, (step - delay_steps) / warmup_steps)
    return factor


def generator_param_groups(generators: list[ResnetGenerator], lr: float, intensity_lr: float) -> list[dict]:
    """Adam groups: the generators at `lr`, their intensity branches (if any) at `intensity_lr`.

    The branch is a few hundred weights whose output must travel ~1.0 (a tissue's whole intensity
    swing), and Adam moves each weight by at most its lr a step. Measured on val (300 steps,
    benchmarks/sim2real_translator_ablation.json): at 2e-4 the branch moves little but the
    model is clearly better with it than without; at 3e-3 it moved monotonically (with D's colour
    augmentation) or ran away to an all-background image (without): the default stays at `lr`.
    """
    branch = [p for g in generators if g.intensity is not None for p in g.intensity.parameters()]
    in_branch = {id(p) for p in branch}
    rest = [p for g in generators for p in g.parameters() if id(p) not in in_branch]
    return [{"params": rest, "lr": lr}] + ([{"params": branch, "lr": intensity_lr}] if branch else [])


def train(params: Params, source: str = "classical", out: Path | None = None,
          segmenter_file: Path = SEGMENTER_FILE) -> dict[str, float]:
    """The stage's recipe; `out` (default pipeline/train_cyclegan/<source>) and `segmenter_file`
    let benchmarks train variants in a scratch folder with another frozen segmenter."""
    cfg, train_cfg = params.train.cyclegan, params.train
    out = OUT_ROOT / source if out is None else out
    dist = from_environment(train_cfg.device)
    seed_everything(params.seed)  # the same initial weights on every rank
    runtime = make_runtime(train_cfg.device, train_cfg.amp, dist.local_rank)
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    # The sim side is the chosen rendering; its labels are the simulator's either way. Sim and
    # real slices are unpaired (and differ in number): two memory-mapped sets, two streams.
    sim_arrays = open_split(SIM2REAL / "train", (source, "sim_labels"))
    sim_arrays = {"sim": sim_arrays[source], "sim_labels": sim_arrays["sim_labels"]}
    real_arrays = open_split(SIM2REAL / "train", ("real",))
    val = {("sim" if k == source else k): v
           for k, v in monitoring_slices(SIM2REAL / "val", (source, "sim_labels", "real")).items()}
    # data.train_fraction (data-scarcity experiments): nested subsets of the sim and of the real slices.
    keep = {key: train_subset(len(arrays[key]), params.data.train_fraction, params.seed + offset)
            for key, offset, arrays in (("sim", 0, sim_arrays), ("real", 1, real_arrays))}
    if cfg.crop_size > sim_arrays["sim"].shape[-1]:
        raise ConfigError(f"train.cyclegan.crop_size: {cfg.crop_size} is larger than the prepared images "
                          f"({sim_arrays['sim'].shape[-1]} px)")
    train_dir = str(SIM2REAL / "train")
    sim_stream = BatchStream(SliceCrops(sim_arrays, image_crop(cfg.crop_size, "sim", "sim_labels"), params.seed,
                                        keep["sim"], train_dir), cfg.batch_size, dist, params.seed,
                             train_cfg.num_workers, "train.cyclegan.batch_size")
    real_stream = BatchStream(SliceCrops(real_arrays, image_crop(cfg.crop_size, "real"), params.seed + 1,
                                         keep["real"], train_dir), cfg.batch_size, dist, params.seed + 1,
                              train_cfg.num_workers, "train.cyclegan.batch_size")
    settings = CycleGANSettings(lambda_adv=train_cfg.lambda_adv, lambda_cycle=train_cfg.lambda_cycle,
                                lambda_identity=train_cfg.lambda_identity, lambda_percep=train_cfg.lambda_percep,
                                lambda_semantic=train_cfg.lambda_semantic, gan_loss=cfg.gan_loss, policy=cfg.diffaugment,
                                reconstruction_beta=cfg.reconstruction_beta, lambda_structure=train_cfg.lambda_structure)
    perceptual, vgg_backbone = None, "unused"
    if settings.lambda_percep > 0:
        perceptual, vgg_backbone = perceptual_loss("pipeline/weights", cfg.vgg_layers, "The CycleGAN content loss")
        perceptual = runtime.place(perceptual)
    # One frozen segmenter: the semantic loss, the sample overlays and the val Dice.
    segmenter, segmenter_meta = load_segmenter(segmenter_file, segmenter_provenance(params))
    segmenter = runtime.place(segmenter)
    networks = CycleGANNets(  # built in this order from the seed: g_sim2real, g_real2sim, d_real, d_sim
        *(runtime.place(ResnetGenerator(1, cfg.g_channels, cfg.g_blocks, cfg.residual, cfg.intensity_hidden,
                                        zero_start=cfg.pointwise_steps > 0))
          for _ in range(2)),
        *(runtime.place(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm,
                                            downsample=cfg.d_downsample))
          for _ in range(2)))
    # Under DDP the conv path's weights get no gradient in the pointwise phase: DDP must be told.
    nets = CycleGANNets(**{name: dist.wrap(net, runtime.device, unused_parameters=cfg.pointwise_steps > 0
                                           and name.startswith("g_"))
                           for name, net in vars(networks).items()})
    optimizers = CycleGANOptimizers(
        g=torch.optim.Adam(generator_param_groups([networks.g_sim2real, networks.g_real2sim], cfg.lr, cfg.intensity_lr),
                           cfg.lr, betas=cfg.betas, **adam_options()),
        d=torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], cfg.lr, betas=cfg.betas,
                           **adam_options()))
    critics = CycleGANCritics(ImagePool(cfg.pool_size, torch.Generator().manual_seed(params.seed + 1)),
                              ImagePool(cfg.pool_size, torch.Generator().manual_seed(params.seed + 2)),
                              perceptual, segmenter, settings)
    cycle_weight = cycle_ramp(cfg.cycle_warmup_steps, cfg.cycle_delay_steps)
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(cfg.steps, cfg.decay_start))
                  for name, opt in (("g", optimizers.g), ("d", optimizers.d))}
    seed_rank_streams(params.seed, dist.rank)  # each rank's own DiffAugment draws
    # The unwrapped networks (a checkpoint has the same names with or without DDP), and the
    # pools, which are the same on every rank (cyclegan_step.pooled).
    state = TrainState(modules=dict(vars(networks)), optimizers={"g": optimizers.g, "d": optimizers.d},
                       schedulers=schedulers, extras={"pool_real": critics.pool_real, "pool_sim": critics.pool_sim})
    run_fingerprint = fingerprint({k: v for k, v in as_dict(cfg).items() if k not in NOT_FINGERPRINTED},
                                  {k: getattr(train_cfg, k) for k in ("lambda_adv", "lambda_cycle", "lambda_identity",
                                                                      "lambda_percep", "lambda_semantic", "lambda_structure")},
                                  params.seed, source, params.data.train_fraction, split_digest(SIM2REAL / "train"), sha256(segmenter_file), vgg_backbone,
                                  runtime.amp, runtime.device.type)  # a change of precision or device starts fresh

    def sample():
        sim, real = val["sim"][:4], val["real"][:4]
        fake_real, fake_sim = predict(networks.g_sim2real, sim, runtime), predict(networks.g_real2sim, real, runtime)
        change, peak = difference_map(fake_real, sim)
        return grid([sim, fake_real, change, predict(networks.g_real2sim, fake_real, runtime),
                     overlay_labels(fake_real, predict_labels(segmenter, fake_real, runtime)), real, fake_sim],
                    [source, "fake_real", f"|fake_real-{source}| /{peak:.2f}", "rec", "seg(fake_real)", "real", "fake_sim"])

    def step_fn(step: int) -> dict[str, float]:
        (sim, sim_labels), (real,) = sim_stream.batch(step), real_stream.batch(step)
        batch = CycleGANBatch(runtime.batch(sim), sim_labels.to(runtime.device), runtime.batch(real))
        now = replace(settings, lambda_cycle=settings.lambda_cycle * cycle_weight(step))
        # Pointwise phase (a function of the step, so a resumed run is in the same phase): the refiners
        # are their intensity branches alone until the conv path joins, from zero, at pointwise_steps.
        for generator in (networks.g_sim2real, networks.g_real2sim):
            generator.conv_path_enabled = step >= cfg.pointwise_steps
        stats = cyclegan_step(nets, optimizers, critics, batch, now, runtime, dist)
        stats["g/lambda_cycle"] = now.lambda_cycle
        for scheduler in schedulers.values():
            scheduler.step()
        return stats

    resolved = {"seed": params.seed, "input": source, "train_fraction": params.data.train_fraction,
                "train_counts": {key: len(index) for key, index in keep.items()},
                "train": {k: v for k, v in as_dict(train_cfg).items() if k != "sr"},
                "vgg_backbone": vgg_backbone, "segmenter": segmenter_meta, "world_size": dist.world_size}
    with training_run(out, state, run_fingerprint, train_cfg.resume, resolved, runtime, cfg.steps, dist,
                      params.seed) as run:
        run.fit(step_fn, LoopSettings(total_steps=cfg.steps, log_every=cfg.log_every, sample_every=cfg.sample_every,
                                      checkpoint_every=cfg.checkpoint_every, max_nan_retries=train_cfg.max_nan_retries,
                                      desc=f"CycleGAN ({source})"), sample)
        if not dist.is_main:
            return {}
        # conv_path false: pointwise_steps >= steps, the zero-start conv path was never trained (it outputs 0).
        meta = {"channels": cfg.g_channels, "blocks": cfg.g_blocks, "residual": cfg.residual,
                "intensity_hidden": cfg.intensity_hidden, "conv_path": cfg.pointwise_steps < cfg.steps,
                "steps": cfg.steps, "vgg_backbone": vgg_backbone, "input": source,
                META_KEY: translator_provenance(params, source).as_meta()}
        save_weights(out / "g_sim2real.pt", networks.g_sim2real, {**meta, "direction": "sim2real"})
        save_weights(out / "g_real2sim.pt", networks.g_real2sim, {**meta, "direction": "real2sim"})
        # Content check on validation slices: does the frozen segmenter still find the sim labels?
        fake_real = predict(networks.g_sim2real, val["sim"], runtime.fp32())
        for name, images in ((f"segmenter_on_{source}", val["sim"]), ("segmenter_on_fake_real", fake_real)):
            run.summary.update(dice_report(f"val/{name}", predict_labels(segmenter, images, runtime.fp32()),
                                           val["sim_labels"], class_names))
    return run.summary


def main(argv: list[str] | None = None) -> int:
    try:
        return run_stage("train_cyclegan", __doc__, train, argv, expected=(NonFiniteLossError,),
                         options={"--input": {"dest": "source", "choices": INPUTS, "default": "classical",
                                              "help": "the sim rendering to translate (default: classical)"}})
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
