"""The SR generators saved by train_sr_psnr and train_sr, rebuilt frozen for the GAN phase and for evaluate_sr.

Apart from src/training/artifacts.py so that the stages that never load an SR model (train_cyclegan, ...) do
not depend on the SR network's code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from src.models.srresnet import SRResNet
from src.training.artifacts import load_frozen
from src.training.provenance import Provenance


def load_sr_generator(path: Path, scale: int, degradation: str, phase: str | None = None, *,
                      expected: Provenance | None) -> torch.nn.Module:
    """An SRResNet saved by train_sr_psnr (phase "psnr") or train_sr ("gan"), frozen in eval mode; it must match
    the data's scale and degradation, and, with `phase`, be that phase's model: a PSNR model copied over g_gan.pt
    is refused instead of being reported as the GAN. `expected` (sr_provenance; None for benchmarks that trained
    the file themselves): the data and params it must have been trained on."""
    stage = {"psnr": "train_sr_psnr", "gan": "train_sr"}.get(phase or "", "train_sr_psnr / train_sr")

    def build(meta: dict) -> torch.nn.Module:
        if phase is not None and meta.get("phase") != phase:
            raise ValueError(f"{path}: is the {meta.get('phase', 'unlabelled')} model of SR training, but is read "
                             f"as the {phase} model; re-run `dvc repro {stage}`")
        if meta["scale"] != scale or meta["degradation"] != degradation:
            raise ValueError(f"{path}: model was trained for x{meta['scale']} {meta['degradation']} but the "
                             f"prepared data is x{scale} {degradation}; re-run `dvc repro {stage}`")
        return SRResNet(scale, degradation, channels=meta["channels"], blocks=meta["blocks"],
                        data_consistency=meta["data_consistency"], clamp_output=meta["clamp_output"],
                        data_consistency_band=meta["data_consistency_band"])
    return load_frozen(path, build, stage, expected)[0]
