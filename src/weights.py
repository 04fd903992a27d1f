"""DVC stage `weights`: resolve pretrained weights (VGG19, FID Inception, ResNet-18) in one place, honestly.

Order for each network: a local file named in params, the standard torch hub cache
(`torch.hub.get_dir()/checkpoints/<file>`), then the library's own download code
(torchvision's weights API URLs and pytorch-fid's URL, through torch.hub), bounded by a
socket timeout so that offline it fails in seconds. Each file must load strictly into the
architecture that uses it. The result is pipeline/weights/<name>.pth for each network
found and a manifest saying which source won and the sha256, or why it is unavailable;
src/weight_sources.py holds the resolution code; src/pretrained.py is how the other stages read the result.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from src.atomic import staged_dir
from src.config import Params
from src.weight_sources import copy_into, resolve, weight_specs, write_manifest
from src.stage import run_stage

OUT_DIR = Path("pipeline/weights")
log = logging.getLogger("weights")


def resolve_all(params: Params) -> str:
    """Resolve every network into a staged copy of pipeline/weights/ with its manifest."""
    cfg = params.weights
    local = {"vgg19": cfg.vgg19_path, "inception_fid": cfg.inception_path, "resnet18": cfg.resnet18_path}
    with staged_dir(OUT_DIR) as staging:
        entries = {}
        for name, spec in weight_specs().items():
            entry = resolve(spec, local[name], cfg.allow_download, cfg.download_timeout_s)
            if entry["status"] == "available":
                copy_into(staging, name, Path(entry["origin"]))
                log.info("%s: %s from %s", name, spec.description, entry["source"])
            else:
                log.warning("%s UNAVAILABLE (%s): %s", name, spec.description, entry["reason"])
            entries[name] = entry
        write_manifest(staging, entries)
    return f"{sum(e['status'] == 'available' for e in entries.values())} of {len(entries)} networks available"


DESCRIPTION = (
    "Resolve VGG19 (perceptual loss), FID Inception-v3 and ResNet-18 (U-Net encoder) weights. Reads params.yaml "
    "`weights` (local files), then the torch hub cache, then tries the libraries' own download. Writes "
    "pipeline/weights/<name>.pth for each network found and pipeline/weights/manifest.json saying, for every "
    "network, its source and sha256 or why it is unavailable.")


def main(argv: list[str] | None = None) -> int:
    return run_stage("weights", DESCRIPTION, resolve_all, argv)


if __name__ == "__main__":
    sys.exit(main())
