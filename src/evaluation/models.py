"""Loading the trained generators for evaluation, with errors that name the file and the stage to re-run."""

from __future__ import annotations

from pathlib import Path

import torch

from src.models.cyclegan import ResnetGenerator
from src.models.srresnet import SRResNet
from src.training.artifacts import load_frozen


def load_sr_generator(path: Path, scale: int, degradation: str) -> torch.nn.Module:
    """The SRResNet saved by train_sr, frozen in eval mode; it must match the test data's scale and degradation."""
    def build(meta: dict) -> torch.nn.Module:
        if meta["scale"] != scale or meta["degradation"] != degradation:
            raise ValueError(f"{path}: model was trained for x{meta['scale']} {meta['degradation']} but the test "
                             f"data is x{scale} {degradation}; re-run train_sr")
        return SRResNet(scale, degradation, channels=meta["channels"], blocks=meta["blocks"],
                        data_consistency=meta["data_consistency"])
    return load_frozen(path, build, "train_sr")[0]


def load_translator(path: Path) -> torch.nn.Module:
    """g_sim2real saved by train_cyclegan, frozen in eval mode."""
    return load_frozen(path, lambda meta: ResnetGenerator(1, meta["channels"], meta["blocks"], meta["residual"]),
                       "train_cyclegan")[0]
