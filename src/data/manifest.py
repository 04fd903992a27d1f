"""The prepare stage's manifest: what was read (with sha256), how it was split, and what was written."""

from __future__ import annotations

from pathlib import Path

from src.checksum import sha256
from src.config import DataConfig, as_dict
from src.data.sets import Sets, describe
from src.data.volumes import Volume, VolumeInfo, geometry_record


def manifest(data: DataConfig, seed: int, inputs: list[Path], volumes: list[Volume | VolumeInfo], splits: dict,
             sim_splits: dict | None, sr: Sets, s2r: Sets | None, not_written: str) -> dict:
    """manifest.json without the wall time: resolved data params, input files with sha256, volumes,
    the split manifests (src/data/stacks.py; sim_splits for the user's sim images), and per
    output set its counts, shapes, dtypes and value ranges (`not_written`: why sim2real is absent). Each
    volume's `geometry` is its spacing and orientation as read and how its slices were resampled
    (src/data/volumes.py `geometry_record`)."""
    return {
        "stage": "prepare",
        "source": data.source,
        "seed": seed,
        "data": as_dict(data),
        "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
        "volumes": [{"index": i, "name": v.name, "image": str(v.image_path), "labels": v.label_source,
                     "shape": list(v.shape), "geometry": geometry_record(v, data.axes)} for i, v in enumerate(volumes)],
        "splits": splits,
        "user_sim_splits": sim_splits,
        "outputs": {"sr": describe(sr),
                    "sim2real": describe(s2r) if s2r is not None else {"written": False, "reason": not_written}},
    }
