"""Read the weights manifest written by the `weights` stage (src/weights.py, src/weight_sources.py).

Consumers never download: they ask for a network by name and get its file, or None with
a loud warning, and then record the fallback they used under its own name.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features

log = logging.getLogger(__name__)


def read_manifest(weights_dir: Path | str) -> dict[str, dict]:
    path = Path(weights_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights manifest missing; run `dvc repro weights` first") from None


def weight_file(weights_dir: Path | str, name: str, use: str) -> Path | None:
    """The resolved file for `name`, or None with a loud warning saying what `use` falls back to."""
    entry = read_manifest(weights_dir).get(name)
    if entry and entry["status"] == "available":
        return Path(weights_dir) / entry["file"]
    reason = entry["reason"] if entry else "not in the manifest"
    log.warning("=" * 72)
    log.warning("PRETRAINED WEIGHTS UNAVAILABLE: %s. %s falls back: see metrics for the backbone used.", name, use)
    log.warning("reason: %s", reason)
    log.warning("Give a local file in params.yaml (weights.*_path) or put it in the torch hub cache.")
    log.warning("=" * 72)
    return None


def encoder_weights_file(weights_dir: Path | str, encoder: str, use: str) -> str | None:
    """The ImageNet weights file of a U-Net encoder (`segmenter.encoder`), or None for a random init.

    Only ResNet-18's weights are fetched by the `weights` stage; other encoders start from random weights,
    which build_unet records as "<encoder>_random_init"."""
    if encoder != "resnet18":
        return None
    path = weight_file(weights_dir, encoder, use)
    return None if path is None else str(path)


def perceptual_loss(weights_dir: Path | str, layers: list[str] | tuple[str, ...], use: str) -> tuple[VGGPerceptualLoss, str]:
    """(VGGPerceptualLoss on `layers`, backbone name): ImageNet VGG19 when the `weights` stage
    found it, else the recorded random-init fallback (`vgg19_random_init`)."""
    vgg_path = weight_file(weights_dir, "vgg19", use=use)
    vgg_features, backbone = build_vgg19_features(str(vgg_path) if vgg_path else None)
    return VGGPerceptualLoss(vgg_features, list(layers)), backbone
