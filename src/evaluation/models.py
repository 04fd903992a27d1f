"""Loading the trained generators for evaluation, with errors that name the file and the stage to re-run."""

from __future__ import annotations

from pathlib import Path

import torch

from src.models.cyclegan import ResnetGenerator
from src.models.srresnet import SRResNet
from src.training.checkpoint import load_weights


def load_sr_generator(path: Path, scale: int, degradation: str) -> torch.nn.Module:
    """The SRResNet saved by train_sr, frozen in eval mode; it must match the test data's scale and degradation."""
    blob = load_weights(path)
    meta = blob["meta"]
    try:
        if meta["scale"] != scale or meta["degradation"] != degradation:
            raise ValueError(f"{path}: model was trained for x{meta['scale']} {meta['degradation']} but the test "
                             f"data is x{scale} {degradation}; re-run train_sr")
        g = SRResNet(scale, degradation, channels=meta["channels"], blocks=meta["blocks"])
        g.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run train_sr") from None
    return g.eval().requires_grad_(False)


def load_translator(path: Path) -> torch.nn.Module:
    """g_sim2real saved by train_cyclegan, frozen in eval mode."""
    blob = load_weights(path)
    try:
        g = ResnetGenerator(1, blob["meta"]["channels"], blob["meta"]["blocks"], blob["meta"]["residual"])
        g.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run train_cyclegan") from None
    return g.eval().requires_grad_(False)
