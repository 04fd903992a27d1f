"""Reading a pretrained weights file (VGG19, ResNet-18, FID Inception) with an error that names it.

The `weights` stage's manifest says which files are available; a file that is there but empty, truncated or not
a state dict would otherwise surface as a traceback from deep inside torch in whichever stage loads it first.
"""

from __future__ import annotations

from pathlib import Path

import torch

FIX = "replace it (params.yaml weights.*_path or the torch hub cache) and run `dvc repro -f weights`"


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The {name: tensor} state dict in `path` (`what`: e.g. "VGG19 weights"), or a ValueError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises half a dozen types for a bad file: EOFError, RuntimeError, pickle's
        raise ValueError(f"{path}: {what}: not a readable PyTorch weights file ({type(err).__name__}: {err}); "
                         f"{FIX}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: {what}: holds {type(state).__name__}, not a state dict of tensors; {FIX}")
    return state


def not_loadable(path: str | Path, what: str, err: Exception) -> ValueError:
    """The error for a readable file whose tensors do not fit the network."""
    return ValueError(f"{path}: {what} do not fit the network ({type(err).__name__}: {str(err)[:300]}); {FIX}")
