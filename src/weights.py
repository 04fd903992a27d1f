"""DVC stage `weights`: resolve pretrained weights into pipeline/weights/ with a manifest."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from src.config import ConfigError, load_params
from src.pretrained import copy_into, resolve, weight_specs, write_manifest

OUT_DIR = Path("pipeline/weights")
log = logging.getLogger("weights")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.weights",
        description="Resolve VGG19 (perceptual loss), FID Inception-v3 and ResNet-18 (U-Net encoder) weights. "
        "Reads params.yaml `weights` (local files), then the torch hub cache, then tries the libraries' own "
        "download. Writes pipeline/weights/<name>.pth for each network found and pipeline/weights/manifest.json "
        "saying, for every network, its source and sha256 or why it is unavailable.",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_params(args.params).weights
        local = {"vgg19": cfg.vgg19_path, "inception_fid": cfg.inception_path, "resnet18": cfg.resnet18_path}
        OUT_DIR.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".weights-", dir=OUT_DIR.parent))
        try:
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
            shutil.rmtree(OUT_DIR, ignore_errors=True)
            staging.rename(OUT_DIR)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
