"""Full training state: networks, optimisers, schedulers, extras, RNG states and step.

Saving the optimiser (Adam moments) and scheduler state is what keeps losses from
spiking after a resume (junyanz CycleGAN saves only the nets; issue #1380). RNG states
make a resumed CPU run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import errno
import io
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class Stateful(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> Any: ...


def rng_state() -> dict:
    """RNG states as tensors and plain ints, so checkpoints load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Everything a training run needs to continue exactly where it stopped."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Stateful] = field(default_factory=dict)   # image pools, data generators
    step: int = 0
    phase: str = ""

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "phase": self.phase,
            "modules": {k: v.state_dict() for k, v in self.modules.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "extras": {k: v.state_dict() for k, v in self.extras.items()},
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for group in ("modules", "optimizers", "schedulers", "extras"):
            ours, theirs = getattr(self, group), state[group]
            if set(ours) != set(theirs):
                raise ValueError(f"checkpoint {group} {sorted(theirs)} do not match the run's {sorted(ours)}")
            for key, obj in ours.items():
                obj.load_state_dict(theirs[key])
        self.step = state["step"]
        self.phase = state["phase"]
        set_rng_state(state["rng"])


def snapshot(state: TrainState) -> bytes:
    """An in-memory copy of the state (for NaN rollback), independent of later updates."""
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    return buffer.getvalue()


def restore(state: TrainState, blob: bytes) -> None:
    state.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be written or must not be used; the message names the file."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain (torch's zip writer re-raises an OSError as a RuntimeError)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def save_atomic(path: Path, obj: Any) -> None:
    """torch.save `obj` to a temporary file beside `path`, then rename it over `path`.

    A kill never leaves half a file and the previous `path` stays until the new one is
    complete. When the write fails the temporary file is removed; a full disk is a
    CheckpointError saying so (the previous file is intact), anything else re-raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and _disk_full(err):
            previous = "the previous one is intact" if path.exists() else "there was no previous one"
            raise CheckpointError(f"{path}: the disk is full (no space left on device) while writing it; "
                                  f"{previous}. Free space and run the stage again") from err
        raise


def save_checkpoint(path: Path, state: TrainState, fingerprint: str, rank_rng: list[dict] | None = None) -> None:
    """Atomic (see `save_atomic`), so a kill or a full disk never leaves half a checkpoint.

    `rank_rng`: under DDP, every rank's `rng_state()` in rank order (the networks are the
    same on every rank and saved once; the RNG streams are each rank's own).
    """
    blob = {"fingerprint": fingerprint, "state": state.state_dict()}
    if rank_rng is not None:
        blob["rank_rng"] = rank_rng
    save_atomic(path, blob)


def load_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict {"fingerprint", "state"}; a corrupt file is a clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: corrupt or unreadable training checkpoint: {type(err).__name__}: {err}; "
                              f"delete it or set train.resume: false") from None


def save_weights(path: Path, net: nn.Module, meta: dict) -> None:
    """Save a network's weights for later stages (atomic, see `save_atomic`)."""
    save_atomic(path, {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "meta": meta})


def load_weights(path: Path) -> dict:
    """{"state_dict", "meta"} written by `save_weights`; clear error naming a missing/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (run the stage that makes it)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: corrupt or unreadable checkpoint: {type(err).__name__}: {err}") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ValueError(f"{path}: not a weights file of this project (missing state_dict/meta)")
    return blob
