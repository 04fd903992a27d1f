"""Device selection and the CUDA speed-ups (bf16 autocast, channels_last, cudnn benchmark).

The CPU and CUDA paths run the same code: on CPU every helper here is a no-op, so a
training step never branches on the device.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp: bool             # bf16 autocast + channels_last; only ever True on CUDA

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, net: nn.Module) -> nn.Module:
        """Move a network to the device (channels_last on CUDA: faster convs under AMP)."""
        net = net.to(self.device)
        if self.amp:
            net = net.to(memory_format=torch.channels_last)
        return net

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.amp and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def make_runtime(device: str, amp: bool) -> Runtime:
    """`device`: auto | cpu | cuda. AMP (bf16) is used only on CUDA."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: 'cuda' requested but no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        runtime = Runtime(torch.device("cuda"), amp=amp)
    else:
        runtime = Runtime(torch.device("cpu"), amp=False)
    log.info("device: %s, amp(bf16)+channels_last: %s", runtime.device, runtime.amp)
    return runtime


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
