"""DVC stage `train_segmenter`: U-Net on simulated (or randomised) slices, frozen afterwards for the CycleGAN's semantic loss."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from src.atomic import write_json
from src.augment.randomization import RandomizedRender
from src.config import Params, SegmenterConfig, as_dict
from src.data.prepared import PREPARED, load_meta, open_split
from src.models.segmenter import build_unet
from src.pretrained import encoder_weights_file
from src.stage import run_stage
from src.training.checkpoint import save_weights
from src.training.data import monitoring_slices
from src.training.distributed import from_environment, shutdown
from src.training.lock import LOCK_NAME, die_with_parent, output_lock
from src.training.provenance import META_KEY, segmenter_provenance
from src.training.runtime import make_runtime, seed_everything
from src.training.segmentation import Render, dice_report, fit_segmenter, predict_labels

OUT = Path("pipeline/train_segmenter")
WEIGHTS_DIR = Path("pipeline/weights")
SIM2REAL = PREPARED / "sim2real"


def segmenter_meta(params: Params, n_classes: int, encoder_weights: str) -> dict:
    cfg = params.segmenter
    return {"encoder": cfg.encoder, "encoder_depth": cfg.encoder_depth, "decoder_channels": list(cfg.decoder_channels),
            "n_classes": n_classes, "encoder_weights": encoder_weights}


def training_render(cfg: SegmenterConfig, n_tissues: int) -> Render | None:
    """segmenter.randomize: a fresh SynthSeg-style image from every batch's label crops; else None (the sim images).

    Across contrasts (T2 sim, T1 real) a U-Net trained on the sim rendering rewards the CycleGAN
    for keeping the T2 contrast; one trained on images of random tissue intensities judges the
    anatomy only.
    """
    if not cfg.randomize:
        return None
    return RandomizedRender(n_tissues, cfg.randomization)


def train(params: Params) -> dict:
    """The stage's recipe, holding pipeline/train_segmenter's lock on rank 0: one trainer per output folder."""
    dist = from_environment(params.train.device)
    if not dist.is_main:  # the other DDP ranks train and write nothing
        die_with_parent()
        return fit_and_save(params, dist)
    with output_lock(OUT / LOCK_NAME, "train_segmenter", OUT):
        die_with_parent()
        return fit_and_save(params, dist)


def fit_and_save(params: Params, dist) -> dict:
    started = time.perf_counter()
    cfg = params.segmenter
    seed_everything(params.seed)  # the same initial weights on every rank
    runtime = make_runtime(params.train.device, params.train.amp, dist.local_rank)  # the GANs' device and precision
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    train_data = open_split(SIM2REAL / "train", ("sim", "sim_labels"))  # memory maps: batches read their own slices

    encoder_file = encoder_weights_file(WEIGHTS_DIR, cfg.encoder, use=f"The U-Net {cfg.encoder} encoder")
    model, encoder_weights = build_unet(cfg.encoder, cfg.encoder_depth, cfg.decoder_channels, len(class_names),
                                        encoder_file)
    model = runtime.place(model)
    render = training_render(cfg, len(class_names) - 1)
    trained_on = "randomized images of the sim train labels" if render else "sim train slices"
    losses = fit_segmenter(model, train_data["sim"], train_data["sim_labels"], cfg, cfg.steps, params.seed, runtime,
                           desc="segmenter (randomized)" if render else "segmenter (sim)", render=render,
                           dist=dist, workers=params.train.num_workers,
                           files=(str(SIM2REAL / "train" / "sim.npy"), str(SIM2REAL / "train" / "sim_labels.npy")))
    if not dist.is_main:
        return {}
    val_data = {**monitoring_slices(SIM2REAL / "val", ("sim", "sim_labels")),
                **monitoring_slices(SIM2REAL / "val", ("real", "real_labels"))}

    metrics = {"encoder_weights": encoder_weights, "train/final_loss": sum(losses[-20:]) / len(losses[-20:])}
    for split, domain in (("val_sim", "sim"), ("val_real", "real")):  # in fp32: independent of the CPU's bf16
        metrics.update(dice_report(split, predict_labels(model, val_data[domain], runtime.fp32()),
                                   val_data[f"{domain}_labels"], class_names))
    metrics["wall_time_s"] = round(time.perf_counter() - started, 1)

    save_weights(OUT / "segmenter.pt", model, {**segmenter_meta(params, len(class_names), encoder_weights),
                                               "class_names": class_names, "trained_on": trained_on,
                                               META_KEY: segmenter_provenance(params).as_meta()})
    write_json(OUT / "config.json", {"seed": params.seed, "segmenter": as_dict(cfg), "encoder_weights": encoder_weights})
    write_json(OUT / "metrics.json", metrics)
    return metrics


DESCRIPTION = (
    "Train the U-Net (segmentation-models-pytorch) on simulated slices and their tissue labels (with "
    "segmenter.randomize: on SynthSeg-style images drawn from those labels, contrast-agnostic). Reads "
    "data/prepared/sim2real/{train,val}/ and meta.json, pipeline/weights/ (ResNet-18 encoder) and params.yaml "
    "(seed, segmenter). Writes pipeline/train_segmenter/segmenter.pt, config.json and metrics.json (validation "
    "Dice per class on sim and on real slices: the sim-to-real gap).")


def main(argv: list[str] | None = None) -> int:
    try:
        return run_stage("train_segmenter", DESCRIPTION, train, argv)
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
