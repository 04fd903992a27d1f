"""Networks that earlier stages saved (`save_weights`: state dict + meta), rebuilt frozen for later stages."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from src.models.segmenter import build_unet
from src.training.checkpoint import load_weights


def load_frozen(path: Path, build: Callable[[dict], nn.Module], stage: str) -> tuple[nn.Module, dict]:
    """(network rebuilt by `build(meta)` with the saved weights, in eval mode and frozen; its meta).

    A file whose weights do not fit the architecture its meta describes (e.g. written by an
    older version of the code) is a ValueError naming the file and the stage to re-run.
    """
    blob = load_weights(path)
    try:
        net = build(blob["meta"])
        net.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run {stage}") from None
    return net.eval().requires_grad_(False), blob["meta"]


def load_segmenter(path: Path, stage: str = "train_segmenter") -> tuple[nn.Module, dict]:
    """A U-Net saved by `stage` (train_segmenter's, or the judge of `baselines`), frozen, and its meta."""
    return load_frozen(path, lambda meta: build_unet(meta["encoder"], meta["encoder_depth"], meta["decoder_channels"],
                                                     meta["n_classes"], None)[0], stage)
