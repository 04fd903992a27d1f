"""Networks that earlier stages saved (`save_weights`: state dict + meta), rebuilt frozen for later stages."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from src.models.segmenter import build_unet
from src.training.checkpoint import load_weights
from src.training.provenance import Provenance, check_provenance


def load_frozen(path: Path, build: Callable[[dict], nn.Module], stage: str,
                expected: Provenance | None) -> tuple[nn.Module, dict]:
    """(network rebuilt by `build(meta)` with the saved weights, in eval mode and frozen; its meta).

    `expected`: the data and params the file must have been trained on (src/training/provenance.py); None only
    for tools that inspect a file whatever its origin. A file trained on others, or whose weights do not fit the
    architecture its meta describes (e.g. written by an older version of the code), is a ValueError naming the
    file and the stage to re-run.
    """
    blob = load_weights(path)
    try:
        net = build(blob["meta"])  # builders check what the file says it is (phase, direction, input) first
    except KeyError as err:
        raise ValueError(f"{path}: weights do not match their metadata (KeyError: {err}); re-run {stage}") from None
    if expected is not None:  # then what it was trained on
        check_provenance(path, blob["meta"], expected)
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match their metadata (RuntimeError: {err}); "
                         f"re-run {stage}") from None
    return net.eval().requires_grad_(False), blob["meta"]


def load_segmenter(path: Path, expected: Provenance | None) -> tuple[nn.Module, dict]:
    """A U-Net saved by train_segmenter or `baselines` (its judge), frozen, and its meta; `expected` as in
    `load_frozen` (segmenter_provenance or judge_provenance)."""
    stage = expected.stage if expected is not None else "the stage that wrote it"
    return load_frozen(path, lambda meta: build_unet(meta["encoder"], meta["encoder_depth"], meta["decoder_channels"],
                                                     meta["n_classes"], None)[0], stage, expected)
