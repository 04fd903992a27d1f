"""SHA-256 of inputs, for manifests and for the training fingerprints (one helper for the whole project)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path | str) -> str:
    """SHA-256 of a file, or of a folder (e.g. a DICOM series: its files' names and hashes, sorted)."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for f in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
            digest.update(f"{f.name}:{sha256(f)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
