"""SRGAN step functions (Ledig et al. 2017): the PSNR phase and the GAN phase.

Each function is one optimisation step that reads like the paper's algorithm box and
returns a stats dict; scheduling, logging and checkpoints live in `loop.fit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.config import SRGanLoss
from src.losses.adversarial import D_LOSSES, G_LOSSES, RELATIVISTIC_G_LOSSES, r1_penalty
from src.training.distributed import unwrap
from src.training.gan_utils import discriminate, discriminate_pair, ema_update, frozen, real_sign
from src.training.runtime import Runtime


@dataclass(frozen=True, kw_only=True)
class SRGanSettings:
    """The `train.sr` loss weights (0 skips a term's computation) and loss choices of the GAN phase."""

    gan_loss: SRGanLoss
    policy: str                 # DiffAugment policy, "" = none
    lambda_pixel: float
    lambda_percep: float
    lambda_adv: float
    r1_gamma: float
    label_smoothing: float
    lambda_consistency: float = 0.0


@dataclass(frozen=True)
class SRNets:
    """Under DDP `g` and `d` are DistributedDataParallel wrappers (src/training/distributed.py); `g_ema` never is:
    it is updated from the averaged, identical-on-every-rank weights, so every rank holds the same EMA."""

    g: nn.Module          # the generator being trained
    g_ema: nn.Module      # its exponential moving average: the model that is evaluated and saved
    d: nn.Module


@dataclass(frozen=True)
class SROptimizers:
    g: torch.optim.Optimizer
    d: torch.optim.Optimizer


@dataclass(frozen=True)
class SRCritics:
    """The content network of the GAN phase and the data's degradation operator (HR -> LR, for the consistency
    term); a positive weight without its critic fails here."""

    perceptual: nn.Module | None
    settings: InitVar[SRGanSettings]
    degrade: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self, settings: SRGanSettings) -> None:
        if settings.lambda_percep > 0 and self.perceptual is None:
            raise ValueError(f"train.sr.lambda_percep is {settings.lambda_percep} but no perceptual network was given")
        if settings.lambda_consistency > 0 and self.degrade is None:
            raise ValueError(f"train.sr.lambda_consistency is {settings.lambda_consistency} but no degradation "
                             f"operator was given")


@dataclass(frozen=True)
class SRBatch:
    lr_img: torch.Tensor      # (N, 1, h, w) in [-1, 1]
    naive_img: torch.Tensor   # (N, 1, h*s, w*s): the naive upsampling, the generator's global skip
    hr_img: torch.Tensor      # (N, 1, h*s, w*s) in [-1, 1]


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up (as TF's ExponentialMovingAverage with num_updates): short CPU runs
    would otherwise average mostly the random initial weights."""
    return min(decay, (1 + step) / (10 + step))


def psnr_step(nets: SRNets, optimizer: torch.optim.Optimizer, batch: SRBatch, runtime: Runtime, *,
              ema_decay: float) -> dict[str, float]:
    """Phase 1: pixel L1 only (the PSNR-oriented SRResNet)."""
    with runtime.autocast():
        sr_img = nets.g(batch.lr_img, batch.naive_img)
    loss = F.l1_loss(sr_img.float(), batch.hr_img)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ema_update(nets.g_ema, unwrap(nets.g), ema_decay)
    return {"g/pixel": loss.item()}


def d_step(d: nn.Module, optimizer: torch.optim.Optimizer, hr_img: torch.Tensor, sr_img: torch.Tensor,
           settings: SRGanSettings, runtime: Runtime, *, instance_noise: float) -> dict[str, float]:
    """The GAN phase's D update: real HR against the (detached) SR images, one D call through the choke point.

    hr_img, sr_img: (N, 1, H, W) in [-1, 1]; `sr_img` must not carry G's graph (D's update
    must not flow into G). R1 (Mescheder et al. 2018) uses the same D forward as the real
    term, with gradients w.r.t. the un-augmented real image; with R1 on the step runs in
    fp32, since a gradient penalty is a second-order quantity that bf16 rounds away.
    Returns d/adv, d/real_score, d/fake_score, d/real_sign and, with R1, d/r1.
    """
    s = settings
    stats: dict[str, float] = {}
    real_in = hr_img.detach().requires_grad_(s.r1_gamma > 0)
    with runtime.autocast(enabled=s.r1_gamma == 0):
        real_logits, fake_logits = discriminate_pair(d, real_in, sr_img, s.policy, instance_noise)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    d_adv = D_LOSSES[s.gan_loss](real_logits, fake_logits, label_smoothing=s.label_smoothing)
    d_total = d_adv
    if s.r1_gamma > 0:
        d_r1 = r1_penalty(real_logits, real_in)
        d_total = d_total + 0.5 * s.r1_gamma * d_r1
        stats["d/r1"] = d_r1.item()
    optimizer.zero_grad(set_to_none=True)
    d_total.backward()
    optimizer.step()
    stats.update({
        "d/adv": d_adv.item(),
        "d/real_score": real_logits.mean().item(),
        "d/fake_score": fake_logits.mean().item(),
        "d/real_sign": real_sign(real_logits.detach(), s.gan_loss, fake_logits.detach()),
    })
    return stats


def g_adversarial_loss(d: nn.Module, sr_img: torch.Tensor, hr_img: torch.Tensor, settings: SRGanSettings,
                       instance_noise: float) -> torch.Tensor:
    """G's adversarial term. The relativistic loss (ESRGAN) also scores the real batch, detached: that D call
    trains nothing, it only sets the level G's fakes are judged against."""
    fake_logits = discriminate(d, sr_img, settings.policy, instance_noise).float()
    if settings.gan_loss in RELATIVISTIC_G_LOSSES:
        with torch.no_grad():
            real_logits = discriminate(d, hr_img, settings.policy, instance_noise).float()
        return RELATIVISTIC_G_LOSSES[settings.gan_loss](fake_logits, real_logits)
    return G_LOSSES[settings.gan_loss](fake_logits)


def gan_step(nets: SRNets, optimizers: SROptimizers, critics: SRCritics, batch: SRBatch, settings: SRGanSettings,
             runtime: Runtime, *, instance_noise: float, ema_decay: float) -> dict[str, float]:
    """Phase 2: `d_step` on real HR and detached SR, then G step on L1 + VGG + adversarial (+ consistency).

    G runs once; D's update sees `sr_img.detach()` so it cannot flow into G, and scores
    real and fake in one call. Terms with a zero weight are not computed.
    """
    s = settings
    lr_img, naive_img, hr_img = batch.lr_img, batch.naive_img, batch.hr_img
    with runtime.autocast():
        sr_img = nets.g(lr_img, naive_img)
    stats = d_step(nets.d, optimizers.d, hr_img, sr_img.detach(), s, runtime, instance_noise=instance_noise)

    # G step. D is called unwrapped: it is not updated here, and a DDP forward whose
    # parameters get no gradient would leave DDP waiting for them.
    d_frozen = unwrap(nets.d)
    with frozen(d_frozen):
        terms: dict[str, torch.Tensor] = {}
        with runtime.autocast():
            if s.lambda_pixel > 0:
                terms["pixel"] = F.l1_loss(sr_img.float(), hr_img)
            if s.lambda_percep > 0:
                terms["percep"] = critics.perceptual(sr_img, hr_img).float()
            if s.lambda_adv > 0:
                terms["adv"] = g_adversarial_loss(d_frozen, sr_img, hr_img, s, instance_noise)
        if s.lambda_consistency > 0:
            # Frequency separation (Fritsche et al. 2019): D judges the high band, and this L1 holds the band the
            # LR measures to HR's, both crops degraded alike. The soft form of the data-consistency projection:
            # a G without the projection (train.sr.gan_data_consistency false) keeps the measured band without
            # having to keep its ringing, which a clamped G then flattens in the air. In fp32: an FFT.
            terms["consistency"] = F.l1_loss(critics.degrade(sr_img.float()), critics.degrade(hr_img))
        weights = {"pixel": s.lambda_pixel, "percep": s.lambda_percep, "adv": s.lambda_adv,
                   "consistency": s.lambda_consistency}
        g_total = sum((weights[name] * value for name, value in terms.items()), torch.zeros((), device=hr_img.device))
        optimizers.g.zero_grad(set_to_none=True)
        g_total.backward()
        optimizers.g.step()
    ema_update(nets.g_ema, unwrap(nets.g), ema_decay)
    stats.update({f"g/{name}": value.item() for name, value in terms.items()})
    stats["g/total"] = g_total.item()
    return stats
