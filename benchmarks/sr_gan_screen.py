"""SR GAN-phase screen: the GAN phase of train_sr run in-process from the cached PSNR model, scored on val.

Each run starts from the PSNR model of benchmarks/sr_discriminator.py (phase 1 of train_sr,
trained once and cached under /tmp) and runs the stage's own GAN step (`sr_steps.gan_step`,
the stage's D builder, optimisers, EMA warm-up, instance-noise schedule and batch stream at
the GAN phase's steps) with params.yaml plus overrides. Recorded per run:

- D in the game: d/adv per 64 steps, and D's val accuracy and AUC (crops as in
  benchmarks/sr_discriminator.py: HR vs the current G(LR crop), no augmentation) every
  `EVAL_EVERY` steps, with 95 % bootstrap intervals over val slices. Chance is 2 ln 2 = 1.386
  for the nonsaturating d/adv, 0.5 for accuracy and AUC.
- the EMA generator against the PSNR model on whole val slices: PSNR (border crop = scale,
  data range 2) and SWD (x1e3, evaluate's settings), the paired GAN - PSNR-model PSNR
  difference and the GAN/PSNR-model SWD ratio, with paired 95 % bootstrap intervals
  (benchmarks/sr_ablation.score).

A run's overrides may hold the benchmark-only key `d_warmup`: that many D-only steps (`d_step`
against the frozen PSNR model, on the batches just before the GAN phase) before the game
starts, as BasicSR's `net_d_init_iters`; and `d_steps`: D updates per G update (WGAN's
n_critic), the extra ones on batches of their own with fakes from the current G; and
`gan_betas`: Adam's betas of both players in the GAN phase only (phase 1 keeps train.sr.betas); and
`bf16`: true runs the game under bf16 autocast, as train_sr does on a CPU with native bf16 (else fp32); and
`d_bands`: a list of Laplacian pyramid bands (0 = finest), one PatchGAN of train.sr's shape on each in place of
the stage's high-pass D (`LaplacianBandDiscriminator`).
Two more keys, `clamp_output` and `d_compress`, were benchmark-only when their runs were recorded; they are now
`train.sr.clamp_output` (its own PSNR model is trained so) and `train.sr.d_highpass_compress`, and mean those.

    python -m benchmarks.sr_gan_screen RUN [RUN ...]
    python -m benchmarks.sr_gan_screen --table

Run with OMP_NUM_THREADS=1: wall times are one thread on a shared 2-core machine. Val only.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from kornia.geometry.transform import build_laplacian_pyramid
from torch import nn

from benchmarks.sr_ablation import interval, override, score
from benchmarks.sr_discriminator import crop_scores, machine, psnr_model, separation, val_crops
from src.config import params_from_dict
from src.data.degrade import degrade
from src.data.prepared import PREPARED, load_meta, load_split, open_split
from src.data.subset import train_subset
from src.metrics.bootstrap import percentile_interval, resample_indices
from src.metrics.image_quality import psnr
from src.models.discriminators import PatchDiscriminator
from src.models.highpass import gaussian_highpass
from src.models.srresnet import SRResNet
from src.pretrained import perceptual_loss
from src.train_sr import discriminator
from src.training.checkpoint import load_weights, save_weights
from src.training.data import BatchStream, SliceCrops, paired_crop
from src.training.distributed import SINGLE
from src.training.gan_utils import decision_boundary
from src.training.inference import predict
from src.training.runtime import make_runtime
from src.training.sr_setup import generator_layer
from src.training.sr_steps import (SRBatch, SRCritics, SRGanSettings, SRNets, SROptimizers, ema_decay_at,
                                   d_step, gan_step)

RESULTS = Path("benchmarks/sr_gan_screen.json")
ALIASES = {"clamp_output": "train.sr.clamp_output", "d_compress": "train.sr.d_highpass_compress"}
SR_DATA = PREPARED / "sr"
EVAL_EVERY = 80
SCREEN = {"train.sr.gan_steps": 320}   # screening budget: half the GAN phase
OLD_D = {"train.sr.diffaugment": "color,translation,cutout", "train.sr.lr_d": 4.0e-4}   # the D before this screen
NEW_D = {"train.sr.diffaugment": "color", "train.sr.lr_d": 4.0e-4}   # translation and cutout fill with -1: false edges
_THREE_LAYER_D_RUNS: dict[str, dict] = {
    "old_d_320": {**SCREEN, **OLD_D},
    "new_d_320": {**SCREEN, **NEW_D},
    # TTUR: G slower than D (BasicSR's GAN-stage lr is 1e-4)
    "new_d_lr_gan1e-4_320": {**SCREEN, **NEW_D, "train.sr.lr_gan": 1.0e-4},
    "new_d_lr_gan1e-4_lr_d1e-3_320": {**SCREEN, **NEW_D, "train.sr.lr_gan": 1.0e-4, "train.sr.lr_d": 1.0e-3},
    "new_d_lr_gan1e-4_lr_d1e-3_r1_320": {**SCREEN, **NEW_D, "train.sr.lr_gan": 1.0e-4, "train.sr.lr_d": 1.0e-3,
                                         "train.sr.r1_gamma": 1.0},
    "new_d_lr_gan1e-4_lr_d1e-3_adv5e-3_320": {**SCREEN, **NEW_D, "train.sr.lr_gan": 1.0e-4, "train.sr.lr_d": 1.0e-3,
                                              "train.sr.lambda_adv": 5.0e-3},
    "new_d_adv5e-2_320": {**SCREEN, **NEW_D, "train.sr.lambda_adv": 5.0e-2},
    # D-only warm-up steps against the PSNR model before the game (benchmark-only key d_warmup)
    "new_d_warmup160_320": {**SCREEN, **NEW_D, "d_warmup": 160},
    "new_d_no_adv_320": {**SCREEN, **NEW_D, "train.sr.lambda_adv": 0.0},
    "defaults": {},
    # "today": the defaults before this screen (lambda_adv 2e-2) at the screening budget, and why D is at
    # chance in the game: is it G's adversarial answer (lambda_adv 0: D only watches), the perceptual term
    # closing the detail-energy gap D lives on (lambda_percep 0), or too few D updates (n_critic 4)?
    "today_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-2},
    "today_no_adv_320": {**SCREEN, "train.sr.lambda_adv": 0.0},
    "today_no_percep_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-2, "train.sr.lambda_percep": 0.0},
    "today_d_steps4_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-2, "d_steps": 4},
    # D's val AUC swings below 0.5 in the game: the players cycle. Momentum feeds cycling (GANs use
    # beta1 0.5, DCGAN, or 0, StyleGAN2); a weaker adversarial pull lets D stay ahead.
    "today_betas0.5_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-2, "gan_betas": [0.5, 0.99]},
    "today_betas0_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-2, "gan_betas": [0.0, 0.99]},
    "today_adv5e-3_320": {**SCREEN, "train.sr.lambda_adv": 5.0e-3},
    "today_adv2e-3_320": {**SCREEN, "train.sr.lambda_adv": 2.0e-3},
    "today_adv1e-2_320": {**SCREEN, "train.sr.lambda_adv": 1.0e-2},
    # The whole GAN phase (640 steps): the default before this screen (2e-2) and the one it chose (5e-3).
    "adv2e-2": {"train.sr.lambda_adv": 2.0e-2},
    "adv5e-3": {"train.sr.lambda_adv": 5.0e-3},
    # The same two under bf16 autocast, as the default run on a CPU with AVX512-BF16/AMX trains.
    "adv2e-2_bf16": {"train.sr.lambda_adv": 2.0e-2, "bf16": True},
    "adv5e-3_bf16": {"train.sr.lambda_adv": 5.0e-3, "bf16": True},
    # The default game under other seeds (each trains its own PSNR model, batches and D): the default run's
    # D ended at AUC 0.64 where this screen's seed-42 run ended at 0.90. How far apart do seeds end?
    "adv5e-3_bf16_seed43": {"seed": 43, "train.sr.lambda_adv": 5.0e-3, "bf16": True},
    "adv5e-3_bf16_seed44": {"seed": 44, "train.sr.lambda_adv": 5.0e-3, "bf16": True},
    # The background: 72 % of a slice is exactly -1 in HR, and the PSNR model's ringing there is 12 % of its SWD
    # (benchmarks/sr_swd_levels.json). Clamped in training, can both models reach it, and does the GAN then
    # beat the PSNR model by more?
    "adv5e-3_bf16_clamped": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "clamp_output": True},
    # The default game again on the 2-core Xeon with AMX (its own prepared data and PSNR model: bf16 and the
    # k-space FFT round differently there), the reference for the runs below, which ran on it too.
    "adv5e-3_bf16_xeon": {"train.sr.lambda_adv": 5.0e-3, "bf16": True},
    # Is the 0.95 SWD ratio a budget limit? The default game at 2x and 4x the GAN phase (SRGAN and ESRGAN run
    # theirs for 1e5+ steps; this one has 640), the same PSNR model, batches and D.
    "adv5e-3_bf16_gan1280": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.gan_steps": 1280},
    "adv5e-3_bf16_gan2560": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.gan_steps": 2560},
    # Or G's capacity: BasicSR's MSRResNet size (64 channels, 16 blocks; 4.6x the FLOPs), its own PSNR model.
    "adv5e-3_bf16_g64x16": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.g_channels": 64,
                            "train.sr.g_blocks": 16},
    # Or the crops: data consistency projects each 64-px training crop onto its own k-space, not the slice's, so
    # G learns the background under another operator than the one it is scored with. Whole 128-px slices
    # (batch 2: the same pixels a step) in both phases, its own PSNR model; D then sees whole slices too.
    "adv5e-3_bf16_crop128": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.crop_size": 128,
                             "train.sr.batch_size": 2},
}
# Every run above ran with the 3-layer D, the default until 2026-12-05: pinned, so that re-running one reproduces
# its row under today's params.yaml.
_DC_RUNS: dict[str, dict] = {
    **{name: {"train.sr.d_layers": 3, **overrides} for name, overrides in _THREE_LAYER_D_RUNS.items()},
    # Or D's view: SWD compares 7x7 patches of each pyramid band, the finest band most; the 3-layer D judges 70-px
    # patches. D with 2 layers (34 px; alone on the frozen PSNR model val AUC 1.00 against 0.996) and 1 (16 px,
    # the default since).
    "adv5e-3_bf16_d_layers2": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.d_layers": 2},
    "adv5e-3_bf16_d_layers1": {"train.sr.lambda_adv": 5.0e-3, "bf16": True, "train.sr.d_layers": 1},
    # Both D depths under seeds 43 and 44 (each seed its own PSNR model, batches and D), on the Xeon.
    **{f"adv5e-3_bf16_d_layers{layers}_seed{seed}": {"seed": seed, "train.sr.lambda_adv": 5.0e-3, "bf16": True,
                                                     "train.sr.d_layers": layers}
       for seed in (43, 44) for layers in (3, 1)},
    # The adversarial weight again, with the one-layer D (seed 42): does a D that stays ahead let a larger
    # weight buy distribution distance? (The 3-layer D lost the game at 2e-2.)
    "adv2e-2_bf16_d_layers1": {"train.sr.lambda_adv": 2.0e-2, "bf16": True, "train.sr.d_layers": 1},
    "adv1e-1_bf16_d_layers1": {"train.sr.lambda_adv": 1.0e-1, "bf16": True, "train.sr.d_layers": 1},
    # The D's loss in the game (the one-layer D, seed 42): hinge (SN-GAN), and ESRGAN's relativistic average D,
    # whose G loss also reads D on the real batch (ESRGAN: sharper edges, more detailed texture than SRGAN's).
    "hinge_bf16_d_layers1": {"train.sr.gan_loss": "hinge", "bf16": True, "train.sr.d_layers": 1},
    "relativistic_bf16_d_layers1": {"train.sr.gan_loss": "relativistic", "bf16": True, "train.sr.d_layers": 1},
    "relativistic_adv2e-2_bf16_d_layers1": {"train.sr.gan_loss": "relativistic", "train.sr.lambda_adv": 2.0e-2,
                                            "bf16": True, "train.sr.d_layers": 1},
    # Or D's view of the frequencies: the naive upsampling's ringing sits at the band edge (8-px wavelength),
    # which a sigma-1 high-pass passes at 27 %; sigma 2 and 3 pass 71 % and 93 %.
    "adv5e-3_bf16_d_layers1_highpass2": {"train.sr.d_highpass_sigma": 2.0, "bf16": True, "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_layers1_highpass3": {"train.sr.d_highpass_sigma": 3.0, "bf16": True, "train.sr.d_layers": 1},
    # Or DiffAugment's translation and cutout (they fill with -1, false edges for the high-pass): colour only.
    "adv5e-3_bf16_d_layers1_color": {"train.sr.diffaugment": "color", "bf16": True, "train.sr.d_layers": 1},
    # Or the data-consistency layer: it keeps the measured band, ringing included, so only an exact high band can
    # flatten the background (11 % of the PSNR model's SWD). Without it G may write the background directly
    # (its own PSNR model).
    "adv5e-3_bf16_d_layers1_no_dc": {"train.sr.data_consistency": False, "bf16": True, "train.sr.d_layers": 1},
    # When G fools the one-layer D (lambda_adv 1e-1), SWD has barely moved: what a spectrally normalised 32-channel
    # D can see is not what SWD compares. A wider D (128 channels), without spectral norm (instance norm), and
    # R1 instead (gamma 1) at the weight where G presses it (2e-2); and the content terms G answers besides D.
    "adv5e-3_bf16_d_layers1_d128": {"train.sr.d_channels": 128, "bf16": True, "train.sr.d_layers": 1},
    "adv2e-2_bf16_d_layers1_d128": {"train.sr.d_channels": 128, "train.sr.lambda_adv": 2.0e-2, "bf16": True,
                                    "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_layers1_no_sn": {"train.sr.spectral_norm": False, "bf16": True, "train.sr.d_layers": 1},
    "adv2e-2_bf16_d_layers1_no_sn_r1": {"train.sr.spectral_norm": False, "train.sr.r1_gamma": 1.0,
                                        "train.sr.lambda_adv": 2.0e-2, "bf16": True, "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_layers1_no_percep": {"train.sr.lambda_percep": 0.0, "bf16": True, "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_layers1_no_pixel": {"train.sr.lambda_pixel": 0.0, "bf16": True, "train.sr.d_layers": 1},
    "adv2e-2_bf16_d_layers1_highpass3": {"train.sr.d_highpass_sigma": 3.0, "train.sr.lambda_adv": 2.0e-2, "bf16": True,
                                         "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_layers1_levels": {"bf16": True, "train.sr.d_layers": 1},   # the default again, with SWD per level
    # The 64-px SWD level, the band just above the measured one, never moves under the levers above. One D per
    # Laplacian band (benchmark-only key d_bands): the finest and the next band, and the next band alone.
    "adv5e-3_bf16_d_bands01": {"d_bands": [0, 1], "bf16": True, "train.sr.d_layers": 1},
    "adv2e-2_bf16_d_bands01": {"d_bands": [0, 1], "train.sr.lambda_adv": 2.0e-2, "bf16": True, "train.sr.d_layers": 1},
    "adv5e-3_bf16_d_band1": {"d_bands": [1], "bf16": True, "train.sr.d_layers": 1},
}
# Every run above ran with the generator and D of the defaults until 2026-12-05's third session: the whole measured
# band kept exactly, no clamp in training, the linear high-pass front end, and lambda_adv 5e-3 where a run names none.
# Pinned, so that re-running one reproduces its row under today's params.yaml (the runs below pin them too).
DC_FAMILY = {"train.sr.lambda_adv": 5.0e-3, "train.sr.data_consistency": True, "train.sr.data_consistency_band": 1.0,
             "train.sr.clamp_output": False, "train.sr.d_highpass_compress": 0.0,
             "train.sr.gan_data_consistency": True, "train.sr.gan_clamp_output": False, "train.sr.lambda_consistency": 0.0}
COMPRESSED = {"d_compress": 0.01}
NO_DC_CLAMPED = {"train.sr.data_consistency": False, "clamp_output": True}
GAN_NO_DC_CLAMPED = {"train.sr.gan_data_consistency": False, "train.sr.gan_clamp_output": True}
RUNS: dict[str, dict] = {
    **{name: {**DC_FAMILY, **overrides} for name, overrides in _DC_RUNS.items()},
    # The D sees faint detail: its high-pass through asinh(x / eps) (train.sr.d_highpass_compress), with G's output
    # clamped to the data range (train.sr.clamp_output) and the data-consistency projection on all, half or none of
    # the measured band (train.sr.data_consistency, train.sr.data_consistency_band).
    **{name: {"bf16": True, "train.sr.d_layers": 1, **DC_FAMILY, **changes} for name, changes in {
        "compress1e-2": COMPRESSED,
        "compress2e-3": {"d_compress": 0.002},
        "no_dc_compress1e-2": {**COMPRESSED, "train.sr.data_consistency": False},
        "no_dc_compress1e-2_adv2e-2": {**COMPRESSED, "train.sr.data_consistency": False, "train.sr.lambda_adv": 0.02},
        "no_dc_clamped": NO_DC_CLAMPED,
        "no_dc_clamped_compress1e-2": {**NO_DC_CLAMPED, **COMPRESSED},
        "no_dc_clamped_compress3e-3": {**NO_DC_CLAMPED, "d_compress": 0.003},
        "no_dc_clamped_compress1e-2_adv1e-2": {**NO_DC_CLAMPED, **COMPRESSED, "train.sr.lambda_adv": 0.01},
        "no_dc_clamped_compress1e-2_adv1e-2_psnr3600": {**NO_DC_CLAMPED, **COMPRESSED, "train.sr.lambda_adv": 0.01,
                                                        "train.sr.psnr_steps": 3600},
        "no_dc_clamped_compress1e-2_adv1e-2_gan1280": {**NO_DC_CLAMPED, **COMPRESSED, "train.sr.lambda_adv": 0.01,
                                                       "train.sr.gan_steps": 1280},
        "no_dc_clamped_compress1e-2_adv5e-2": {**NO_DC_CLAMPED, **COMPRESSED, "train.sr.lambda_adv": 0.05},
        # The family at lambda_adv 2e-2, and the levers around it.
        **{"no_dc_clamped_compress1e-2_adv2e-2" + suffix: {**NO_DC_CLAMPED, **COMPRESSED, "train.sr.lambda_adv": 0.02,
                                                           **more}
           for suffix, more in {"": {}, "_seed43": {"seed": 43}, "_seed44": {"seed": 44},
                                "_psnr3600": {"train.sr.psnr_steps": 3600}, "_gan1280": {"train.sr.gan_steps": 1280},
                                "_no_percep": {"train.sr.lambda_percep": 0.0},
                                "_no_pixel": {"train.sr.lambda_pixel": 0.0},
                                "_d_layers2": {"train.sr.d_layers": 2}, "_percep3": {"train.sr.lambda_percep": 3.0},
                                "_lr_gan8e-4": {"train.sr.lr_gan": 8.0e-4}, "_compress3e-2": {"d_compress": 0.03},
                                "_vgg34": {"train.sr.vgg_layers": ["relu3_4"]},
                                "_d64": {"train.sr.d_channels": 64}}.items()},
        # With the projection, over the whole measured band or below half its cut-off.
        "dc_clamped_compress1e-2": {**COMPRESSED, "clamp_output": True},
        "dc_compress1e-2": COMPRESSED,   # = compress1e-2 through the params key: the same row
        "band05_clamped": {"train.sr.data_consistency_band": 0.5, "clamp_output": True},
        "band05_clamped_compress1e-2": {"train.sr.data_consistency_band": 0.5, "clamp_output": True, **COMPRESSED},
        "band05_clamped_compress1e-2_adv2e-2": {"train.sr.data_consistency_band": 0.5, "clamp_output": True,
                                                **COMPRESSED, "train.sr.lambda_adv": 0.02},
        # The PSNR model with the projection (its fit: +6.99 dB over naive on train against +4.56 clamped without),
        # and the GAN phase alone without it and clamped (train.sr.gan_data_consistency, gan_clamp_output): can
        # the GAN phase flatten the air from the better PSNR model? lambda_adv 0 tells how much of it is D's.
        **{"gan_no_dc_clamped" + suffix: {**GAN_NO_DC_CLAMPED, **more} for suffix, more in {
            "": {}, "_adv0": {"train.sr.lambda_adv": 0.0}, "_adv2e-2": {"train.sr.lambda_adv": 0.02},
            "_compress1e-2_adv2e-2": {**COMPRESSED, "train.sr.lambda_adv": 0.02},
            "_compress1e-2_adv0": {**COMPRESSED, "train.sr.lambda_adv": 0.0},
            # ... and the measured band held to HR's by a soft L1 (train.sr.lambda_consistency): the coarse SWD
            # levels (32 and 16 px, inside the measured band), which the projection kept, drift without it.
            **{f"_compress1e-2_adv2e-2_consistency{w:g}": {**COMPRESSED, "train.sr.lambda_adv": 0.02,
                                                           "train.sr.lambda_consistency": w} for w in (0.1, 1.0, 10.0)},
            **{"_compress1e-2_adv2e-2_consistency1" + more_suffix: {
                **COMPRESSED, "train.sr.lambda_adv": 0.02, "train.sr.lambda_consistency": 1.0, **more}
               for more_suffix, more in {"_seed43": {"seed": 43}, "_seed44": {"seed": 44},
                                         "_gan1280": {"train.sr.gan_steps": 1280},
                                         "_vgg34": {"train.sr.vgg_layers": ["relu3_4"]},
                                         "_highpass2": {"train.sr.d_highpass_sigma": 2.0},
                                         "_percep0.3": {"train.sr.lambda_percep": 0.3}}.items()},
            "_compress1e-2_adv5e-2_consistency1": {**COMPRESSED, "train.sr.lambda_adv": 0.05,
                                                   "train.sr.lambda_consistency": 1.0},
            "_compress1e-2_adv0_consistency1": {**COMPRESSED, "train.sr.lambda_adv": 0.0,
                                                "train.sr.lambda_consistency": 1.0}}.items()},
    }.items()},
}


def d_in_game(d, g, scale, crop, seed, gan_loss) -> dict:
    """D's val separation against the current G, and how far G's detail energy is from HR's (fake/real high-pass RMS)."""
    hr_val, sr_val, owner = val_crops(g, scale, crop)
    result = separation(crop_scores(d, hr_val), crop_scores(d, sr_val), owner, decision_boundary(gan_loss), seed)
    d.train()   # crop_scores puts D in eval mode (no power iteration): back to training
    hf_rms = lambda x: gaussian_highpass(x, 1.0).flatten(1).square().mean(1).sqrt().numpy()  # noqa: E731
    result["fake_over_real_highpass_rms"] = round(float(hf_rms(sr_val).mean() / hf_rms(hr_val).mean()), 4)
    return result


def run(name: str, overrides: dict) -> dict:
    overrides = dict(overrides)
    d_warmup = overrides.pop("d_warmup", 0)
    d_steps = overrides.pop("d_steps", 1)
    gan_betas = overrides.pop("gan_betas", None)
    amp = overrides.pop("bf16", False)
    d_bands = overrides.pop("d_bands", None)
    # Two keys were benchmark-only before they became params: recorded runs keep their names.
    for alias, key in ALIASES.items():
        if alias in overrides:
            overrides[key] = overrides.pop(alias)
    result = _run(name, overrides, d_warmup, d_steps, gan_betas, amp, d_bands)
    if d_bands is not None:
        result["overrides"]["d_bands"] = d_bands
    return result


class LaplacianBandDiscriminator(nn.Module):
    """Benchmark-only D (key `d_bands`): one PatchGAN of train.sr's shape per band of the image's Laplacian pyramid
    (kornia's, the binomial pyramid SWD's levels come from), each judging `gain` times its band, the logits of all
    of them one decision map. Band 0 is the finest (the 128-px level of a whole slice), band 1 the next (the 64-px
    level, just above the measured k-space), at half resolution, where a one-layer D covers 32 HR px."""

    def __init__(self, cfg, bands: list[int], gain: float = 4.0) -> None:
        super().__init__()
        self.bands, self.gain = list(bands), gain
        self.ds = nn.ModuleList(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)
                                for _ in self.bands)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pyramid = build_laplacian_pyramid(images, max(self.bands) + 2)
        return torch.cat([d(self.gain * pyramid[band]).flatten(1) for d, band in zip(self.ds, self.bands)], dim=1)


def _run(name: str, overrides: dict, d_warmup: int, d_steps: int, gan_betas, amp: bool,
         d_bands: list[int] | None = None) -> dict:
    raw = override(yaml.safe_load(Path("params.yaml").read_text()), overrides)
    params = params_from_dict(raw)
    cfg = params.train.sr
    meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    g_path = psnr_model(raw)
    runtime = make_runtime("cpu", amp)
    torch.manual_seed(params.seed)
    # The PSNR model as phase 1 built it, and G as the GAN phase's output layer has it (train.sr.gan_*): the same
    # weights either way.
    psnr_layer, gan_layer = (generator_layer(cfg, cfg.data_consistency, phase) for phase in ("psnr", "gan"))
    g_psnr = SRResNet(scale, degradation, channels=cfg.g_channels, blocks=cfg.g_blocks, **psnr_layer)
    g_psnr.load_state_dict(load_weights(g_path)["state_dict"])
    # One network's initialisation is drawn from the seeded RNG before D's where the layers agree, two where they
    # differ: as each recorded run drew them, so that it reproduces its row (D's initial weights come next).
    if gan_layer == psnr_layer:
        g = copy.deepcopy(g_psnr)
    else:
        g = SRResNet(scale, degradation, channels=cfg.g_channels, blocks=cfg.g_blocks, **gan_layer)
        g.load_state_dict(g_psnr.state_dict())
    d = discriminator(cfg) if d_bands is None else LaplacianBandDiscriminator(cfg, d_bands)
    nets = SRNets(g=g, g_ema=copy.deepcopy(g).requires_grad_(False), d=d)
    betas = tuple(gan_betas) if gan_betas is not None else cfg.betas
    optimizers = SROptimizers(g=torch.optim.Adam(g.parameters(), lr=cfg.lr_gan, betas=betas),
                              d=torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas))
    settings = SRGanSettings(gan_loss=cfg.gan_loss, policy=cfg.diffaugment, lambda_pixel=cfg.lambda_pixel,
                             lambda_percep=cfg.lambda_percep, lambda_adv=cfg.lambda_adv, r1_gamma=cfg.r1_gamma,
                             label_smoothing=cfg.label_smoothing, lambda_consistency=cfg.lambda_consistency)
    perceptual, backbone = perceptual_loss("pipeline/weights", cfg.vgg_layers, "The SR perceptual loss")
    critics = SRCritics(perceptual if cfg.lambda_percep > 0 else None, settings,
                        degrade=partial(degrade, scale=scale, degradation=degradation))
    data = open_split(SR_DATA / "train", ("lr", "naive", "hr"))
    subset = train_subset(len(data["hr"]), params.data.train_fraction, params.seed)
    stream = BatchStream(SliceCrops(data, paired_crop(scale, cfg.crop_size), params.seed, subset), cfg.batch_size,
                         SINGLE, params.seed, 0, "train.sr.batch_size")
    log, d_val = [], {}
    start = time.perf_counter()
    # Benchmark-only D warm-up (BasicSR's net_d_init_iters): D-only steps against the PSNR model first.
    for i in range(d_warmup):
        lr_img, naive_img, hr_img = stream.batch(cfg.psnr_steps - d_warmup + i)
        with torch.no_grad():
            sr_img = g(lr_img, naive_img)
        d_step(d, optimizers.d, hr_img, sr_img, settings, runtime, instance_noise=0.0)
    if d_warmup:
        d_val[0] = d_in_game(d, g, scale, cfg.crop_size, params.seed, cfg.gan_loss)
        print(f"  {name} after {d_warmup} D-only steps: D val auc {interval(d_val[0]['auc'], 3)}", flush=True)
    # Benchmark-only extra D steps per G step (WGAN's n_critic), each on a batch of its own
    # stream (seed + 1 + k) with fakes from the current G.
    extra_streams = [BatchStream(SliceCrops(data, paired_crop(scale, cfg.crop_size), params.seed + 1 + k, subset),
                                 cfg.batch_size, SINGLE, params.seed + 1 + k, 0, "train.sr.batch_size")
                     for k in range(d_steps - 1)]
    for i in range(cfg.gan_steps):
        batch = SRBatch(*stream.batch(cfg.psnr_steps + i))
        noise = cfg.instance_noise * max(0.0, 1.0 - i / max(1, cfg.gan_steps))
        for extra in extra_streams:
            lr_img, naive_img, hr_img = extra.batch(i)
            with torch.no_grad(), runtime.autocast():
                sr_img = g(lr_img, naive_img)
            d_step(d, optimizers.d, hr_img, sr_img.float(), settings, runtime, instance_noise=noise)
        log.append(gan_step(nets, optimizers, critics, batch, settings, runtime, instance_noise=noise,
                            ema_decay=ema_decay_at(i, cfg.ema_decay)))
        if (i + 1) % EVAL_EVERY == 0:
            d_val[i + 1] = d_in_game(d, g, scale, cfg.crop_size, params.seed, cfg.gan_loss)
            print(f"  {name} step {i + 1}: d/adv {np.mean([s['d/adv'] for s in log[-64:]]):.3f} "
                  f"D val auc {interval(d_val[i + 1]['auc'], 3)} fake/real HF RMS "
                  f"{d_val[i + 1]['fake_over_real_highpass_rms']}", flush=True)
    wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix=f"sr_gan_screen_{name}_") as tmp:
        model_meta = {"scale": scale, "degradation": degradation, "channels": cfg.g_channels, "blocks": cfg.g_blocks}
        save_weights(Path(tmp) / "g_psnr.pt", g_psnr, {**model_meta, **psnr_layer})
        save_weights(Path(tmp) / "g_gan.pt", nets.g_ema, {**model_meta, **gan_layer})
        val = score(Path(tmp), "val", params.seed, runtime.fp32())   # scored in fp32 whatever the game ran in
    val["gan_minus_psnr_model_db"] = paired_psnr_difference(nets.g_ema, g_psnr, scale, params.seed, runtime.fp32())
    return {"name": name, "overrides": {**overrides, "d_warmup": d_warmup, "d_steps": d_steps,
                                                   **({"gan_betas": list(gan_betas)} if gan_betas else {}),
                                                   **({"bf16": True} if amp else {})}, "gan_steps": cfg.gan_steps, "psnr_model": str(g_path),
            "perceptual_backbone": backbone, "wall_s": round(wall, 1), "machine": machine(),
            "d_adv_per_64_steps": [round(float(np.mean([s["d/adv"] for s in log[k:k + 64]])), 3)
                                   for k in range(0, len(log), 64)],
            "d_val_during_gan_phase": d_val, "val": val}


def paired_psnr_difference(g_ema, g_psnr, scale, seed, runtime) -> dict:
    """PSNR(EMA GAN) - PSNR(PSNR model) on whole val slices, 95 % paired bootstrap interval over slices."""
    data = load_split(SR_DATA / "val", ("lr", "hr"))
    per_slice = [psnr(predict(net, data["lr"], runtime).clamp(-1, 1), data["hr"], data_range=2.0,
                      crop_border=scale).numpy() for net in (g_ema, g_psnr)]
    diff = per_slice[0] - per_slice[1]
    low, high = percentile_interval(diff[resample_indices(len(diff), 1000, seed)].mean(1))
    return {"value": round(float(diff.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def print_table(results: dict) -> None:
    header = (f"{'run':26} {'D val AUC at end':>22} {'d/adv last 64':>13} {'GAN - PSNR model dB':>24} "
              f"{'GAN/PSNR-model SWD':>22} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for r in results.values():
        last = r["d_val_during_gan_phase"][max(r["d_val_during_gan_phase"], key=int)]
        print(f"{r['name']:26} {interval(last['auc'], 3):>22} {r['d_adv_per_64_steps'][-1]:>13.3f} "
              f"{interval(r['val']['gan_minus_psnr_model_db'], 3):>24} "
              f"{interval(r['val']['gan_swd_over_psnr_model_swd'], 3):>22} {r['wall_s']:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help=f"named runs: {', '.join(RUNS)}")
    parser.add_argument("--name", help="name of an ad-hoc run given by --set")
    parser.add_argument("--set", action="append", default=[], help="dotted.key=value (YAML value) for --name")
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    args = parser.parse_args()
    todo = {name: RUNS[name] for name in args.runs}
    if args.name:
        todo[args.name] = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for name, overrides in ({} if args.table else todo).items():
        result = run(name, overrides)
        results = load_results()
        results[name] = result
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print_table(load_results())


if __name__ == "__main__":
    main()
