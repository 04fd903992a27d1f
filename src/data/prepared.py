"""Reading the prepared arrays (data/prepared/**.npz) with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

PREPARED = Path("data/prepared")


def load_split(path: Path | str, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Load `keys` from one split file. Images come back float32 (N, 1, H, W), labels int64 (N, H, W).

    Raises FileNotFoundError / ValueError naming the file for a missing file, a missing
    key, an empty split or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared split not found (run `dvc repro prepare`)")
    try:
        with np.load(path) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing} (has {data.files})")
            arrays = {k: data[k] for k in keys}
    except (OSError, EOFError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt or unreadable prepared split: {err}") from None
    out = {}
    for key, array in arrays.items():
        if len(array) == 0:
            raise ValueError(f"{path}: '{key}' holds no images")
        if key.endswith("labels"):
            out[key] = torch.from_numpy(array.astype(np.int64))
        else:
            if not np.isfinite(array).all():
                raise ValueError(f"{path}: '{key}' contains NaN or Inf")
            out[key] = torch.from_numpy(array.astype(np.float32))
    return out


def load_meta(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata not found (run `dvc repro prepare`)")
    return json.loads(path.read_text())
