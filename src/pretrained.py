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


REBUILD_WEIGHTS = "re-run `dvc repro -f weights` to rebuild it"
# What each manifest entry must hold, by its status (src/weight_sources.py `resolve` writes them).
ENTRY_KEYS = {"available": ("file",), "unavailable": ("reason",)}


def read_manifest(weights_dir: Path | str) -> dict[str, dict]:
    """pipeline/weights/manifest.json: {network name: entry}. FileNotFoundError when it is missing, ValueError
    naming the file when it is not JSON or not an object of objects."""
    path = Path(weights_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights manifest missing; run `dvc repro weights` first") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror}); {REBUILD_WEIGHTS}") from None
    except ValueError as err:  # JSONDecodeError, or bytes that are no text at all
        raise ValueError(f"{path}: not valid JSON ({err}); {REBUILD_WEIGHTS}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: holds {json.dumps(manifest)[:40]}, not a JSON object; {REBUILD_WEIGHTS}")
    for name, entry in manifest.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: the entry '{name}' holds {json.dumps(entry)[:40]}, not a JSON object; "
                             f"{REBUILD_WEIGHTS}")
    return manifest


def weight_file(weights_dir: Path | str, name: str, use: str) -> Path | None:
    """The resolved file for `name`, or None with a loud warning saying what `use` falls back to."""
    entry = read_manifest(weights_dir).get(name)
    if entry is not None:
        status = entry.get("status")
        if not isinstance(status, str) or status not in ENTRY_KEYS:
            raise ValueError(f"{Path(weights_dir) / 'manifest.json'}: the entry '{name}' has status "
                             f"{json.dumps(status)}, expected one of {sorted(ENTRY_KEYS)}; {REBUILD_WEIGHTS}")
        missing = [key for key in ENTRY_KEYS[status] if not isinstance(entry.get(key), str)]
        if missing:
            raise ValueError(f"{Path(weights_dir) / 'manifest.json'}: the {status} entry '{name}' lacks the key "
                             f"'{missing[0]}' (or it is not a string); {REBUILD_WEIGHTS}")
        if status == "available":
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
