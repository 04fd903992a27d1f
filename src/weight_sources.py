"""Where the `weights` stage finds pretrained weights, and how it checks them.

Order for each network: a local file named in params, the torch hub cache, then the
library's own download (torchvision's weights API URLs, pytorch-fid's), bounded by a socket
timeout so that offline it fails in seconds. Each file must load strictly into the
architecture that uses it.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from src.checksum import sha256


@dataclass(frozen=True)
class WeightSpec:
    name: str                 # key in the manifest and file name in the weights folder
    param_key: str            # dotted params key of the user's local file
    hub_filename: str         # file name the library uses in the hub cache
    url: str
    description: str


def _vgg19_url() -> str:
    from torchvision.models import VGG19_Weights

    return VGG19_Weights.IMAGENET1K_V1.url


def _resnet18_url() -> str:
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1.url


def _inception_url() -> str:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return FID_WEIGHTS_URL


def weight_specs() -> dict[str, WeightSpec]:
    """The networks this project can use, keyed by manifest name."""
    specs = [
        WeightSpec("vgg19", "weights.vgg19_path", "", _vgg19_url(), "VGG19 ImageNet (torchvision IMAGENET1K_V1)"),
        WeightSpec("inception_fid", "weights.inception_path", "", _inception_url(),
                   "Inception-v3 FID weights (TF 2015-12-05 port, pytorch-fid)"),
        WeightSpec("resnet18", "weights.resnet18_path", "", _resnet18_url(), "ResNet-18 ImageNet (torchvision IMAGENET1K_V1)"),
    ]
    return {s.name: WeightSpec(s.name, s.param_key, s.url.rsplit("/", 1)[-1], s.url, s.description) for s in specs}


def _check_vgg19(path: Path) -> None:
    from torchvision.models import vgg19

    vgg19(weights=None).load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _check_resnet18(path: Path) -> None:
    from torchvision.models import resnet18

    resnet18(weights=None).load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _check_inception(path: Path) -> None:
    from src.metrics.features import build_fid_inception

    build_fid_inception(path)


# How each file is verified: it must load strictly into the architecture that uses it.
CHECKS: dict[str, Callable[[Path], None]] = {
    "vgg19": _check_vgg19,
    "inception_fid": _check_inception,
    "resnet18": _check_resnet18,
}


def _download(spec: WeightSpec, timeout_s: float) -> Path:
    """The library's own download into the hub cache; bounded so offline fails fast."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.load_state_dict_from_url(spec.url, progress=False, map_location="cpu", weights_only=True)
    finally:
        socket.setdefaulttimeout(previous)
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.hub_filename


def resolve(spec: WeightSpec, local_path: str, allow_download: bool, timeout_s: float) -> dict:
    """Find one network's weights. Returns a manifest entry (never raises for absence).

    A local path named in params that does not exist is a user error, not a fallback:
    it raises FileNotFoundError naming the params key.
    """
    attempts = []
    if local_path:
        path = Path(local_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{spec.param_key}: file not found: {path}")
        candidates = [("params", lambda: path)]
    else:
        candidates = []
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / spec.hub_filename
    candidates.append(("hub_cache", lambda: hub_file if hub_file.is_file() else None))
    if allow_download:
        candidates.append(("download", lambda: _download(spec, timeout_s)))
    for source, find in candidates:
        try:
            found = find()
        except Exception as err:  # network errors come in many types; record and move on
            attempts.append(f"{source}: {type(err).__name__}: {err}")
            continue
        if found is None:
            attempts.append(f"{source}: no file at {hub_file}")
            continue
        try:
            CHECKS[spec.name](found)
        except Exception as err:
            if source == "params":
                raise ValueError(f"{spec.param_key}: {found} is not a valid {spec.description} state dict: {err}") from err
            attempts.append(f"{source}: {found} failed to load: {type(err).__name__}: {err}")
            continue
        return {"status": "available", "source": source, "origin": str(found), "sha256": sha256(found),
                "description": spec.description, "file": f"{spec.name}.pth"}
    if not allow_download:
        attempts.append("download: disabled by weights.allow_download")
    return {"status": "unavailable", "description": spec.description, "reason": "; ".join(attempts)}


def write_manifest(out_dir: Path, entries: dict[str, dict]) -> None:
    (out_dir / "manifest.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def copy_into(out_dir: Path, name: str, origin: Path) -> None:
    """Copy the weights file into the DVC-tracked folder.

    A copy, not a hard link: DVC makes cached files read-only, which would reach
    through a hard link into the user's hub cache.
    """
    shutil.copyfile(origin, out_dir / f"{name}.pth")
