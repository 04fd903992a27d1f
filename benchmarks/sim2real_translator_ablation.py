"""Sim-to-real translator ablation (cross-contrast T2 sim -> T1 real), scored on the **val** split only.

Each run trains `src.train_cyclegan.train` (the stage's own code) in-process with params.yaml
plus overrides, in a scratch folder (pipeline/ is untouched), then translates the val inputs
with the saved g_sim2real.pt (loaded back with evaluate's `load_translator`) and scores them
against the real val slice of the same anatomy (val sims are rendered from each slice's own
labels), on the foreground (sim_labels != 0) only:

- masked PSNR / SSIM (data range 2.0) and MAE, each with a 95 % percentile bootstrap interval
  over the val slices (one resample matrix shared by every row: rows are paired);
- the translation's mean intensity per tissue (CSF / GM / WM, by the sim labels) beside the
  real slices' (the cross-contrast question: is the tissue order T1's?);
- SWD x1e3 to the real val slices (evaluate's settings, no interval: 14 slices);
- optionally (--downstream) the CyCADA check: a U-Net (params.segmenter recipe, 250 steps)
  trained on the translated train inputs + sim labels, its mean foreground Dice on the real
  val slices.

Reference rows without training: `identity_sim` (the raw T2 sim as it is) and `classical`
(blur + histogram matching, the prepared rendering). `segmenter: randomized` runs give the
semantic term a contrast-agnostic frozen U-Net trained on SynthSeg-style images with tissue
means drawn without a T1 order (RANDOMIZE below), trained once and kept in the scratch folder.

    python -m benchmarks.sim2real_translator_ablation RUN [RUN ...] [--steps 300] [--downstream]
    python -m benchmarks.sim2real_translator_ablation --table

Test is never read. Wall times are those of ONE thread on a shared 2-core CPU (another
engineer's jobs beside): compare them with each other, not with the README's budgets.

The recorded rows were made with (OMP_NUM_THREADS=1):

    ... reference --downstream
    ... branch_no_content before_refiner_defaults refiner_no_content --steps 300 --suffix _s300  (first only)
    ... branch_nc_warm branch_nc_warm_lr1e-3 branch_nc_warm_nocolor branch_nc_warm_fast \
        branch_nc_warm_fast_nocolor refiner_nc_warm_nocolor chosen_returning_clamp --steps 300 --suffix _s300
    ... default --downstream                                  (recorded as default_straight_through_clamp)
    ... default --suffix _returning_clamp --downstream

Each row records `refiner_clamp`, the refiner's output clamp at the time (it changed twice during
the ablation, see REFINER_CLAMP): rows with different clamps are not a controlled comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.sr_ablation import override
from src.augment.randomization import randomized_images
from src.config import RandomizationConfig, params_from_dict
from src.data.prepared import PREPARED, load_meta, load_split
from src.evaluation.models import load_translator
from src.metrics.bootstrap import percentile_interval, resample_indices, resampled_means
from src.metrics.distribution import sliced_wasserstein_distance
from src.metrics.image_quality import masked_mae, masked_psnr, masked_ssim
from src.metrics.segmentation import dice_per_class, mean_foreground_dice
from src.models.segmenter import build_unet
from src.training.checkpoint import save_weights
from src.training.inference import predict
from src.training.runtime import cpu_flags, make_runtime, seed_everything
from src.training.segmentation import fit_segmenter, predict_labels

RESULTS = Path("benchmarks/sim2real_translator_ablation.json")
SCRATCH = Path(tempfile.gettempdir()) / "sim2real_translator_ablation"
SIM2REAL = PREPARED / "sim2real"
DATA_RANGE = 2.0
RESAMPLES = 1000
DOWNSTREAM_STEPS = 250
# The refiner's output clamp in src/models/cyclegan.py when a row was run. It changed during the ablation:
# "hard" (torch clamp, zero gradient past a bound), "straight_through" (gradient always passes: hidden values
# ran away), "returning" (ReturningClamp: passes only steps back into range). Recorded with each row.
REFINER_CLAMP = "returning"
# Contrast-agnostic segmenter for the semantic term: evaluate.randomization's tuned ranges, but the
# tissue means drawn in any order (no T1 prior: the segmenter must not care which contrast it sees).
RANDOMIZE = {"tissue_mean": [0.0, 1.0], "tissue_std": [0.0, 0.05], "t1_ordering": False, "bias_field_std": 0.15,
             "bias_field_grid": 4, "blur_sigma": [0.0, 1.0], "gamma_log_std": 0.15, "noise_std": [0.0, 0.03]}

# The discriminator and crops before the global D (64 px crops, a 34 px PatchGAN): pinned in every row
# chosen before it, so a re-run means what the recorded row meant.
LOCAL_D = {"train.cyclegan.crop_size": 64, "train.cyclegan.batch_size": 4, "train.cyclegan.d_layers": 2,
           "train.cyclegan.d_downsample": 1}
OLD = {**LOCAL_D, "train.cyclegan.intensity_hidden": 0, "train.cyclegan.intensity_lr": 2.0e-4,
       "train.cyclegan.cycle_warmup_steps": 0}  # before this ablation
NO_CONTENT = {"train.lambda_identity": 0.0, "train.lambda_percep": 0.0, "train.lambda_semantic": 0.0}
BRANCH = {**LOCAL_D, "train.cyclegan.intensity_hidden": 32, "train.cyclegan.intensity_lr": 2.0e-4}
NOCOLOR = {"train.cyclegan.diffaugment": "translation,cutout"}   # D sees absolute intensities
CHOSEN = {**BRANCH, **NO_CONTENT, **NOCOLOR,
          "train.cyclegan.cycle_warmup_steps": 150}  # = params.yaml at 300 steps, before the global D
# Whole slices and a D with the brain's outline in view: a 70 px PatchGAN on the 2x average-pooled slice.
GLOBAL_D = {**BRANCH, **NO_CONTENT, **NOCOLOR, "train.cyclegan.crop_size": 128, "train.cyclegan.batch_size": 1,
            "train.cyclegan.d_layers": 3, "train.cyclegan.d_downsample": 2, "train.cyclegan.intensity_lr": 1.0e-3,
            "train.cyclegan.cycle_warmup_steps": 400}
FAST = {"train.cyclegan.intensity_lr": 3.0e-3}   # the branch's own lr (its weights must travel ~1)
WARM = {"train.cyclegan.cycle_warmup_steps": 150}

# name -> {"source": sim | classical, "segmenter": sim | randomized, "overrides": {dotted key: value}}.
# Overrides are applied to the params.yaml of the day: OLD pins the pre-ablation generator so the
# `before_*` rows keep meaning what they meant after the defaults moved.
RUNS: dict[str, dict] = {
    # Today's defaults (issue: the refiner stays at its input), and the tanh generator without content terms.
    "before_refiner_defaults": {"overrides": {**OLD, "train.lambda_identity": 5.0, "train.lambda_percep": 1.0,
                                              "train.lambda_semantic": 1.0}},
    "before_tanh_no_content": {"overrides": {**OLD, **NO_CONTENT, "train.cyclegan.residual": False}},
    "refiner_no_content": {"overrides": {**OLD, **NO_CONTENT}},
    # The intensity branch, with and without each content term.
    "branch_no_content": {"overrides": {**BRANCH, **NO_CONTENT}},
    "branch_identity5": {"overrides": {**BRANCH, **NO_CONTENT, "train.lambda_identity": 5.0}},
    "branch_percep1": {"overrides": {**BRANCH, **NO_CONTENT, "train.lambda_percep": 1.0}},
    "branch_semantic_simseg": {"overrides": {**BRANCH, **NO_CONTENT, "train.lambda_semantic": 1.0}},
    "branch_semantic_randseg": {"segmenter": "randomized",
                                "overrides": {**BRANCH, **NO_CONTENT, "train.lambda_semantic": 1.0}},
    # Cycle-weight warm-up (lambda_cycle from 0 over the first half of a 300-step screen).
    "branch_nc_warm": {"overrides": {**BRANCH, **NO_CONTENT, **WARM}},
    "refiner_nc_warm": {"overrides": {**OLD, **NO_CONTENT, **WARM}},
    "branch_nc_warm_lr1e-3": {"overrides": {**BRANCH, **NO_CONTENT, **WARM, "train.cyclegan.lr": 1.0e-3}},
    "branch_nc_warm_nocolor": {"overrides": {**BRANCH, **NO_CONTENT, **WARM,
                                             "train.cyclegan.diffaugment": "translation,cutout"}},
    "branch_nc_warm_fast": {"overrides": {**BRANCH, **NO_CONTENT, **WARM, **FAST}},
    "branch_nc_fast": {"overrides": {**BRANCH, **NO_CONTENT, **FAST}},
    "branch_nc_warm_fast_nocolor": {"overrides": {**BRANCH, **NO_CONTENT, **WARM, **FAST, **NOCOLOR}},
    "refiner_nc_warm_nocolor": {"overrides": {**OLD, **NO_CONTENT, **WARM, **NOCOLOR}},
    # CHOSEN after the refiner's clamp became a ReturningClamp (earlier rows: straight-through clamp).
    "chosen_returning_clamp": {"overrides": {**CHOSEN}},
    # The chosen recipe (CHOSEN) with one content term on at a time, and with the classical input.
    "chosen_semantic_simseg": {"overrides": {**CHOSEN, "train.lambda_semantic": 1.0}},
    "chosen_semantic_randseg": {"segmenter": "randomized", "overrides": {**CHOSEN, "train.lambda_semantic": 1.0}},
    "chosen_identity5": {"overrides": {**CHOSEN, "train.lambda_identity": 5.0}},
    "chosen_classical": {"source": "classical", "overrides": {**CHOSEN}},
    # A semantic critic that knows the target contrast: randomised tissue means sorted CSF < GM < WM.
    "chosen_semantic_t1seg": {"segmenter": "randomized_t1", "overrides": {**CHOSEN, "train.lambda_semantic": 1.0}},
    "branch_no_content_lr5e-4": {"overrides": {**BRANCH, **NO_CONTENT, "train.cyclegan.lr": 5.0e-4}},
    "branch_no_content_classical": {"source": "classical", "overrides": {**BRANCH, **NO_CONTENT}},
    # The global discriminator (whole 128 px slices, 70 px PatchGAN on the 2x-pooled slice), 800 steps.
    "global_d": {"overrides": {**GLOBAL_D}},
    "global_d_classical": {"source": "classical", "overrides": {**GLOBAL_D}},
    "global_d_branch_lr2e-4": {"overrides": {**GLOBAL_D, "train.cyclegan.intensity_lr": 2.0e-4}},
    "global_d_batch2": {"overrides": {**GLOBAL_D, "train.cyclegan.batch_size": 2}},
    # Controls: whole slices with the local 34 px D (is it the view or the slice?), and no intensity branch.
    "fullslice_local_d": {"overrides": {**GLOBAL_D, "train.cyclegan.d_layers": 2, "train.cyclegan.d_downsample": 1}},
    "global_d_no_branch": {"overrides": {**GLOBAL_D, "train.cyclegan.intensity_hidden": 0}},
    # The cycle term held the pair at the monotone map at every weight tried (1, 2, 10) in a pointwise
    # probe; the reversal came from the adversarial terms alone at steps 400-500. Delay the cycle term past it.
    "global_d_cycle_delay450": {"overrides": {**GLOBAL_D, "train.cyclegan.cycle_delay_steps": 450,
                                              "train.cyclegan.cycle_warmup_steps": 150,
                                              "train.cyclegan.decay_start": 600}},
    # Which part holds the full model at the monotone map: without the cycle term only the conv path is left.
    "global_d_no_cycle": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0}},
    # The probe reversed the order at cycle weight 1 and not at 10 (benchmarks/sim2real_pointwise_probe.json).
    "global_d_cycle1": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 1.0}},
    "global_d_semantic_randseg": {"segmenter": "randomized", "overrides": {**GLOBAL_D, "train.lambda_semantic": 1.0}},
    # Pixel-L1 cycle consistency blocks the order reversal (the tissues must cross on the way). MIND structure
    # consistency (Yang et al. 2018, src/losses/structure.py) holds the anatomy while leaving the contrast free:
    # in place of the cycle term, beside a weak one, and beside the default one.
    "global_d_mind10_no_cycle": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0, "train.lambda_structure": 10.0}},
    "global_d_mind3_no_cycle": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0, "train.lambda_structure": 3.0}},
    "global_d_mind10_cycle1": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 1.0, "train.lambda_structure": 10.0}},
    # Recorded with V floored at 0.01 in mind_descriptor (contrast below ~0.1 is not structure; an edit then
    # reverted): no reversal either.
    "global_d_mind3_floor01_no_cycle": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0, "train.lambda_structure": 3.0}},
    # Pointwise first: the probe's finding in the full model. Both generators are their intensity branch alone
    # (train.cyclegan.pointwise_steps) while the cycle term is off; then the conv path joins from zero.
    "global_d_pointwise400": {"overrides": {**GLOBAL_D, "train.cyclegan.pointwise_steps": 400,
                                            "train.cyclegan.cycle_delay_steps": 400}},
    "global_d_pointwise400_no_cycle": {"overrides": {**GLOBAL_D, "train.cyclegan.pointwise_steps": 400,
                                                     "train.lambda_cycle": 0.0}},
    # Diagnostics: the pointwise phase alone in the stage's loop (one last step with the zero-start conv path).
    "pointwise_phase_only600": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 601,
                                              "train.cyclegan.decay_start": 600, "train.cyclegan.pointwise_steps": 600,
                                              "train.cyclegan.cycle_warmup_steps": 0}},
    "pointwise_phase_only600_nopool": {"overrides": {**GLOBAL_D, "train.lambda_cycle": 0.0,
                                                     "train.cyclegan.steps": 601, "train.cyclegan.decay_start": 600,
                                                     "train.cyclegan.pointwise_steps": 600,
                                                     "train.cyclegan.cycle_warmup_steps": 0,
                                                     "train.cyclegan.pool_size": 0}},
    # 600 pointwise steps without the image pool (D answers the current map: 15.0 dB, CSF -0.94 on its own),
    # then 200 steps with the conv path and one content term: none, the cycle term, or MIND structure (the
    # reversed map is close to a * I + b with a < 0 on the brain, which MIND does not see).
    "pointwise600_only": {"overrides": {
        **GLOBAL_D, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 601, "train.cyclegan.decay_start": 600,
        "train.cyclegan.pointwise_steps": 600, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise600_only_classical": {"source": "classical", "overrides": {
        **GLOBAL_D, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 601, "train.cyclegan.decay_start": 600,
        "train.cyclegan.pointwise_steps": 600, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise600_only_seed1": {"overrides": {
        **GLOBAL_D, "seed": 1, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 601, "train.cyclegan.decay_start": 600,
        "train.cyclegan.pointwise_steps": 600, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise800_only": {"overrides": {
        **GLOBAL_D, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 800, "train.cyclegan.decay_start": 800,
        "train.cyclegan.pointwise_steps": 800, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise800_only_seed1": {"overrides": {
        **GLOBAL_D, "seed": 1, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 800, "train.cyclegan.decay_start": 800,
        "train.cyclegan.pointwise_steps": 800, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise800_only_seed2": {"overrides": {
        **GLOBAL_D, "seed": 2, "train.lambda_cycle": 0.0, "train.cyclegan.steps": 800, "train.cyclegan.decay_start": 800,
        "train.cyclegan.pointwise_steps": 800, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise600_no_content": {"overrides": {
        **GLOBAL_D, "train.lambda_cycle": 0.0, "train.cyclegan.decay_start": 600, "train.cyclegan.pointwise_steps": 600,
        "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "pointwise600_cycle10": {"overrides": {
        **GLOBAL_D, "train.cyclegan.decay_start": 600, "train.cyclegan.pointwise_steps": 600,
        "train.cyclegan.cycle_delay_steps": 600, "train.cyclegan.cycle_warmup_steps": 100, "train.cyclegan.pool_size": 0}},
    "pointwise600_mind10": {"overrides": {
        **GLOBAL_D, "train.lambda_cycle": 0.0, "train.lambda_structure": 10.0, "train.cyclegan.decay_start": 600,
        "train.cyclegan.pointwise_steps": 600, "train.cyclegan.cycle_warmup_steps": 0, "train.cyclegan.pool_size": 0}},
    "global_d_mind10": {"overrides": {**GLOBAL_D, "train.lambda_structure": 10.0}},
    # The chosen defaults as params.yaml holds them (after the ablation).
    "default": {"overrides": {}},
    "default_classical": {"source": "classical", "overrides": {}},
}


def val_data() -> dict[str, torch.Tensor]:
    data = load_split(SIM2REAL / "val", ("sim", "classical", "sim_labels", "real", "real_labels"))
    if not torch.equal(data["sim_labels"], data["real_labels"]):
        raise ValueError(f"{SIM2REAL / 'val'}: sim_labels differ from real_labels; the paired scores need val sims "
                         "rendered from each slice's own labels")
    return data


def interval_dict(per_slice: np.ndarray, indices: np.ndarray, digits: int = 4) -> dict:
    low, high = percentile_interval(resampled_means(per_slice, indices))
    return {"value": round(float(np.nanmean(per_slice)), digits), "ci95": [round(low, digits), round(high, digits)]}


def score(images: torch.Tensor, val: dict[str, torch.Tensor], class_names: list[str], seed: int) -> dict:
    """Paired foreground fidelity of `images` (N, 1, H, W) against the real val slices, tissue means, SWD."""
    real, labels = val["real"], val["sim_labels"]
    mask = (labels != 0)[:, None]
    indices = resample_indices(len(real), RESAMPLES, seed)
    per_slice = {"psnr_db": masked_psnr(images, real, DATA_RANGE, mask).numpy(),
                 "ssim": masked_ssim(images, real, DATA_RANGE, mask).numpy(),
                 "mae": masked_mae(images, real, mask).numpy()}
    result = {name: interval_dict(values, indices) for name, values in per_slice.items()}
    result["tissue_means"] = {name: round(float(images[:, 0][labels == k].mean()), 3)
                              for k, name in enumerate(class_names) if k}
    result["swd_x1e3"] = round(sliced_wasserstein_distance(images, real, seed=seed)["mean"], 2)  # already x1e3
    return result


def randomized_segmenter(params, class_names: list[str], runtime, t1_ordering: bool = False) -> Path:
    """A U-Net (params.segmenter recipe) trained on RANDOMIZE images of the sim train labels; trained once, kept.
    t1_ordering: the tissue means sorted CSF < GM < WM (a segmenter that knows the target is T1-weighted)."""
    ranges_dict = {**RANDOMIZE, "t1_ordering": t1_ordering}
    key = hashlib.sha256(json.dumps([ranges_dict, list(vars(params.segmenter).items()), params.seed],
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = SCRATCH / f"segmenter_randomized_{key}.pt"
    if path.exists():
        return path
    cfg, ranges = params.segmenter, RandomizationConfig(**ranges_dict)
    train = load_split(SIM2REAL / "train", ("sim", "sim_labels"))
    seed_everything(params.seed)
    model, init = build_unet(cfg.encoder, cfg.encoder_depth, cfg.decoder_channels, len(class_names), None)
    model = runtime.place(model)
    fit_segmenter(model, train["sim"], train["sim_labels"], cfg, cfg.steps, params.seed, runtime,
                  desc="segmenter (randomized)",
                  render=lambda labels, draws: randomized_images(labels, len(class_names) - 1, ranges, draws))
    meta = {"encoder": cfg.encoder, "encoder_depth": cfg.encoder_depth, "decoder_channels": list(cfg.decoder_channels),
            "n_classes": len(class_names), "encoder_weights": init, "class_names": class_names,
            "trained_on": "randomized images of the sim train labels"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(path, model, meta)
    return path


def downstream_dice(train_images: torch.Tensor, train_labels: torch.Tensor, val: dict, params, class_names,
                    runtime) -> float:
    """Mean foreground Dice on the real val slices of a U-Net trained on (train_images, train_labels)."""
    cfg = params.segmenter
    seed_everything(params.seed)
    model, _ = build_unet(cfg.encoder, cfg.encoder_depth, cfg.decoder_channels, len(class_names), None)
    model = runtime.place(model)
    fit_segmenter(model, train_images, train_labels, cfg, DOWNSTREAM_STEPS, params.seed, runtime, desc="downstream")
    pred = predict_labels(model, val["real"], runtime.fp32())
    return round(mean_foreground_dice(dice_per_class(pred, val["real_labels"], len(class_names))), 4)


def run(name: str, spec: dict, steps: int | None, downstream: bool) -> dict:
    from src.train_cyclegan import train

    source, segmenter_kind = spec.get("source", "sim"), spec.get("segmenter", "sim")
    overrides = dict(spec["overrides"])
    if steps is not None:
        overrides.update({"train.cyclegan.steps": steps, "train.cyclegan.decay_start": steps // 2})
    raw = override(yaml.safe_load(Path("params.yaml").read_text()), overrides)
    # Scratch runs: no sample grids, one checkpoint at the end (neither changes what is trained).
    final = raw["train"]["cyclegan"]["steps"]
    raw = override(raw, {"train.cyclegan.sample_every": final, "train.cyclegan.checkpoint_every": final,
                         "train.resume": False})
    params = params_from_dict(raw)
    runtime = make_runtime(params.train.device, params.train.amp)
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    val = val_data()
    segmenter_file = Path("pipeline/train_segmenter/segmenter.pt")
    if segmenter_kind == "randomized_t1":
        segmenter_file = randomized_segmenter(params, class_names, runtime, t1_ordering=True)
    elif segmenter_kind == "randomized":
        segmenter_file = randomized_segmenter(params, class_names, runtime)
    out = SCRATCH / name
    load_before, start = os.getloadavg()[0], time.perf_counter()
    summary = train(params, source, out=out, segmenter_file=segmenter_file)
    wall = time.perf_counter() - start
    g = runtime.place(load_translator(out / "g_sim2real.pt", expected=None))
    fp32 = runtime.fp32()
    translated = predict(g, val[source], fp32).clamp(-1, 1)
    result = {"name": name, "source": source, "segmenter": segmenter_kind, "overrides": spec["overrides"],
              "refiner_clamp": REFINER_CLAMP,
              "steps": params.train.cyclegan.steps, "decay_start": params.train.cyclegan.decay_start,
              "train_wall_s": round(wall, 1), "s_per_step": round(wall / params.train.cyclegan.steps, 3),
              "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "val": score(translated, val, class_names, params.seed),
              "val_summary": {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}}
    if downstream:
        train_data = load_split(SIM2REAL / "train", (source, "sim_labels"))
        images = predict(g, train_data[source], fp32).clamp(-1, 1)
        result["downstream_val_real_dice"] = downstream_dice(images, train_data["sim_labels"], val, params,
                                                             class_names, runtime)
    return result


def reference_rows(downstream: bool) -> dict[str, dict]:
    """identity_sim and classical (no training), and the real val slices' own tissue means."""
    params = params_from_dict(yaml.safe_load(Path("params.yaml").read_text()))
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    val = val_data()
    runtime = make_runtime(params.train.device, params.train.amp)
    rows = {}
    for name, key in (("identity_sim", "sim"), ("classical", "classical")):
        rows[name] = {"name": name, "source": key, "segmenter": "-", "overrides": {}, "steps": 0, "train_wall_s": 0.0,
                      "val": score(val[key], val, class_names, params.seed)}
        if downstream and key == "sim":  # the CyCADA baseline; classical's downstream row is evaluate's
            train_data = load_split(SIM2REAL / "train", (key, "sim_labels"))
            rows[name]["downstream_val_real_dice"] = downstream_dice(train_data[key], train_data["sim_labels"], val,
                                                                     params, class_names, runtime)
    labels = val["sim_labels"]
    rows["real_val"] = {"name": "real_val", "tissue_means": {n: round(float(val["real"][:, 0][labels == k].mean()), 3)
                                                             for k, n in enumerate(class_names) if k}}
    return rows


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "cpu_flags_bf16": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
            "avx2": "avx2" in cpu_flags(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "note": "1 thread on a shared 2-core CPU (another engineer's jobs beside): wall times are relative only"}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def fmt(entry: dict, digits: int) -> str:
    low, high = entry["ci95"]
    return f"{entry['value']:.{digits}f} [{low:.{digits}f},{high:.{digits}f}]"


def print_table(results: dict) -> None:
    real = results.get("real_val", {}).get("tissue_means")
    header = (f"{'run':30} {'input':9} {'steps':>5} {'wall s':>7} | {'fg PSNR dB':>20} {'fg SSIM':>21} "
              f"{'fg MAE':>21} | {'CSF / GM / WM':>19} | {'SWD':>6} | {'down Dice':>9}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "val" not in r:
            continue
        v, t = r["val"], r["val"]["tissue_means"]
        down = r.get("downstream_val_real_dice")
        print(f"{name:30} {r['source']:9} {r['steps']:>5} {r['train_wall_s']:>7} | {fmt(v['psnr_db'], 2):>20} "
              f"{fmt(v['ssim'], 3):>21} {fmt(v['mae'], 3):>21} | "
              f"{t['csf']:>5.2f} / {t['gm']:>5.2f} / {t['wm']:>5.2f} | {v['swd_x1e3']:>6.1f} | "
              f"{'' if down is None else f'{down:.3f}':>9}")
    if real:
        print(f"{'real val (target)':30} {'':9} {'':>5} {'':>7} | {'':>20} {'':>21} {'':>21} | "
              f"{real['csf']:>5.2f} / {real['gm']:>5.2f} / {real['wm']:>5.2f} |")


def save(entries: dict) -> None:
    results = load_results()   # re-read: merge with what other invocations recorded
    results.update(entries)
    results["_machine"] = machine()
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help=f"named runs: {', '.join(RUNS)}; 'reference' for the untrained rows")
    parser.add_argument("--steps", type=int, help="override train.cyclegan.steps (decay_start = steps // 2)")
    parser.add_argument("--suffix", default="", help="appended to the recorded names (e.g. _s300)")
    parser.add_argument("--downstream", action="store_true", help="also train and score a downstream U-Net")
    parser.add_argument("--table", action="store_true", help="only print the recorded table")
    args = parser.parse_args()
    if not args.table:
        for name in args.runs:
            if name == "reference":
                save(reference_rows(args.downstream))
            else:
                save({name + args.suffix: run(name, RUNS[name], args.steps, args.downstream)})
    print_table({k: v for k, v in load_results().items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
