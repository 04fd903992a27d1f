"""Networks that earlier stages saved (`save_weights`: state dict + meta), rebuilt for later stages."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from src.models.segmenter import build_unet
from src.training.checkpoint import load_weights


def load_segmenter(path: Path) -> tuple[nn.Module, dict]:
    """The U-Net of `train_segmenter`, frozen (eval mode, no grad to its weights), and its meta."""
    blob = load_weights(path)
    meta = blob["meta"]
    try:
        model, _ = build_unet(meta["encoder"], meta["encoder_depth"], meta["decoder_channels"], meta["n_classes"], None)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run train_segmenter") from None
    return model.eval().requires_grad_(False), meta
