"""Data-parallel training with PyTorch's own engine: `torchrun` + DistributedDataParallel.

`python -m src.<stage>` is one process (world size 1: nothing here does anything). Under
`torchrun --nproc-per-node N -m src.<stage>` (one node or many: `--nnodes`, `--rdzv-endpoint`)
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and the same stage code runs DDP: NCCL on
CUDA (one GPU per local rank), gloo on CPU. Gradients are averaged by DDP itself; this
module only holds the few collective decisions a training loop needs besides them.

The semantics every training stage keeps (README "Distributed training"):
- the batch size in params.yaml is the *global* batch; each rank takes batch / N of it, and
  the data stream (src/training/data.py) hands rank r the r-th part of the very batch a
  single process would draw, so a run does not depend on N beyond float noise (and per-rank
  DiffAugment draws, which come from each rank's own RNG stream, seeded from seed and rank);
- only rank 0 writes (checkpoints, dvclive, samples, weights); every rank reads;
- a checkpoint holds the networks once (they are identical on every rank) and each rank's
  RNG states, so a resumed DDP run continues exactly; a checkpoint from another world size
  resumes too, with RNG streams re-derived from (seed, rank, step);
- the NaN guard's roll-back is decided collectively (`any_rank`): all ranks roll back together.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from src.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in the job: rank, world size, local rank (its GPU on the node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes."""
        return self.rank == 0

    def per_rank_batch(self, global_batch: int, key: str) -> int:
        """The batch each rank computes; `key` names the param in the error when N does not divide it."""
        if global_batch % self.world_size:
            raise ConfigError(f"{key}: the global batch {global_batch} does not split evenly over "
                              f"{self.world_size} processes (train.nproc / torchrun --nproc-per-node x --nnodes)")
        return global_batch // self.world_size

    def wrap(self, net: nn.Module, device: torch.device, unused_parameters: bool = False) -> nn.Module:
        """DDP around `net` (its gradients are averaged over ranks), or `net` itself in one process.

        Buffers (spectral norm's power-iteration vectors, batch-norm statistics) are broadcast
        from rank 0 at every forward (DDP's broadcast_buffers), so they cannot drift apart.
        Batch norm is synchronised across ranks on CUDA (SyncBatchNorm); gloo has no
        SyncBatchNorm, so on CPU each rank normalises its own part of the batch (the U-Net's
        BN is the only one; the GANs use instance or spectral norm). `unused_parameters`: the net
        has parameters no forward uses (an smp encoder cut to encoder_depth keeps its deeper
        layers), which DDP must be told about or it waits for their gradients forever.
        """
        if not self.enabled:
            return net
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=True,
            find_unused_parameters=unused_parameters)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (the NaN guard's collective decision)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (pickled: for small things like RNG states)."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The global batch (no gradient) in the order one process would hold it.

        Rank r holds items r, r + N, r + 2N, ... of the global batch (DistributedSampler's
        interleaving, src/training/data.py), so the ranks' parts are interleaved back.
        """
        if not self.enabled:
            return images
        parts = [torch.empty_like(images) for _ in range(self.world_size)]
        dist.all_gather(parts, images.detach().contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    def my_part(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This rank's items of a global batch ordered as `gather_batch` returns it."""
        return global_batch[self.rank::self.world_size] if self.enabled else global_batch

    def share_buffers(self, net: nn.Module) -> None:
        """Rank 0's buffers on every rank. DDP broadcasts them at the start of each forward, so after
        the last one each rank's batch-norm statistics hold its own last update; this ends training
        with one model everywhere (rank 0's, the one that is saved)."""
        if self.enabled:
            for buffer in unwrap(net).buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def from_environment(device: str = "auto") -> Distributed:
    """The process's place in a torchrun job, joining the process group on first call; SINGLE without torchrun.

    `device` is train.device: the backend is NCCL when the ranks train on CUDA, gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except (KeyError, ValueError) as err:
        raise ConfigError(f"WORLD_SIZE is {world_size} but RANK/LOCAL_RANK are not set ({err}): launch with torchrun "
                          "(see README, Distributed training)") from None
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if on_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
        log.info("DDP: rank %d of %d (local rank %d), backend %s", rank, world_size, local_rank, dist.get_backend())
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown() -> None:
    """Leave the process group (torchrun warns when a worker exits without it)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (checkpoints and EMA use its parameter names, identical in both modes)."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for rank `rank`'s own RNG streams (augmentation draws), from the run's seed: independent
    across ranks, reproducible, and re-derivable at any step (a resume from another world size)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def seed_rank_streams(seed: int, rank: int, step: int = 0) -> None:
    """Seed this process's global RNGs (DiffAugment, instance noise, dropout) for rank `rank` from `step` on.

    Called once the networks are built (their initialisation used the run's seed, identical on
    every rank; DDP broadcasts rank 0's weights anyway), so each rank augments differently.
    """
    import random

    value = rank_seed(seed, rank, step)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
