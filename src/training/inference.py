"""Batched inference: the one place a trained network is run over a whole image set."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from src.training.runtime import Runtime


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, runtime: Runtime, batch_size: int = 16,
            postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Run `model` in eval mode over `images` (N, C, H, W) in batches; outputs on CPU (float32, or what
    `postprocess` returns).

    `postprocess` maps each batch's raw output before it leaves the device (e.g. argmax
    for a segmenter). The model's train/eval mode is restored afterwards, so a sample grid
    taken mid-training does not leave it in eval mode.
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            with runtime.autocast():
                batch_out = model(runtime.batch(images[start:start + batch_size]))
            batch_out = postprocess(batch_out) if postprocess is not None else batch_out.float()
            out.append(batch_out.cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)
