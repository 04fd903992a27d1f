"""SRGAN step functions (Ledig et al. 2017): the PSNR phase and the GAN phase.

Each function is one optimisation step that reads like the paper's algorithm box and
returns a stats dict; scheduling, logging and checkpoints live in `loop.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.adversarial import D_LOSSES, G_LOSSES, r1_penalty
from src.training.gan_utils import discriminate, ema_update, frozen, real_sign
from src.training.runtime import Runtime


@dataclass(frozen=True)
class SRGanSettings:
    gan_loss: str
    policy: str                 # DiffAugment policy, "" = none
    lambda_pixel: float
    lambda_percep: float
    lambda_adv: float
    r1_gamma: float
    label_smoothing: float


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up (as TF's ExponentialMovingAverage with num_updates): short CPU runs
    would otherwise average mostly the random initial weights."""
    return min(decay, (1 + step) / (10 + step))


def psnr_step(g: nn.Module, g_ema: nn.Module, opt_g: torch.optim.Optimizer, lr_img: torch.Tensor,
              naive_img: torch.Tensor, hr_img: torch.Tensor, ema_decay: float, runtime: Runtime) -> dict[str, float]:
    """Phase 1: pixel L1 only (the PSNR-oriented SRResNet). naive_img: the skip, see SRResNet.forward."""
    with runtime.autocast():
        sr_img = g(lr_img, naive_img)
        loss = F.l1_loss(sr_img.float(), hr_img)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    ema_update(g_ema, g, ema_decay)
    return {"g/pixel": loss.item()}


def gan_step(g: nn.Module, d: nn.Module, g_ema: nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, perceptual: nn.Module | None, lr_img: torch.Tensor,
             naive_img: torch.Tensor, hr_img: torch.Tensor, settings: SRGanSettings, instance_noise: float, ema_decay: float,
             runtime: Runtime) -> dict[str, float]:
    """Phase 2: D step on real HR and detached SR, then G step on L1 + VGG + adversarial.

    G runs once; D's update sees `sr_img.detach()` so it cannot flow into G. Terms with a
    zero weight are not computed. R1 (Mescheder et al. 2018) uses the same D forward as
    the adversarial real term, with gradients taken w.r.t. the un-augmented real image.
    """
    d_loss_fn, g_loss_fn = D_LOSSES[settings.gan_loss], G_LOSSES[settings.gan_loss]
    stats: dict[str, float] = {}
    with runtime.autocast():
        sr_img = g(lr_img, naive_img)

    # D step
    real_in = hr_img.detach().requires_grad_(settings.r1_gamma > 0)
    with runtime.autocast():
        real_logits = discriminate(d, real_in, settings.policy, instance_noise).float()
        fake_logits = discriminate(d, sr_img.detach(), settings.policy, instance_noise).float()
        d_adv = d_loss_fn(real_logits, fake_logits, label_smoothing=settings.label_smoothing)
    d_total = d_adv
    if settings.r1_gamma > 0:
        d_r1 = r1_penalty(real_logits, real_in)
        d_total = d_total + 0.5 * settings.r1_gamma * d_r1
        stats["d/r1"] = d_r1.item()
    opt_d.zero_grad(set_to_none=True)
    d_total.backward()
    opt_d.step()
    stats.update({
        "d/adv": d_adv.item(),
        "d/real_score": real_logits.mean().item(),
        "d/fake_score": fake_logits.mean().item(),
        "d/real_sign": real_sign(real_logits.detach(), settings.gan_loss),
    })

    # G step
    with frozen(d):
        g_total = torch.zeros((), device=hr_img.device)
        with runtime.autocast():
            if settings.lambda_pixel > 0:
                g_pixel = F.l1_loss(sr_img.float(), hr_img)
                g_total = g_total + settings.lambda_pixel * g_pixel
                stats["g/pixel"] = g_pixel.item()
            if settings.lambda_percep > 0 and perceptual is not None:
                g_percep = perceptual(sr_img, hr_img).float()
                g_total = g_total + settings.lambda_percep * g_percep
                stats["g/percep"] = g_percep.item()
            if settings.lambda_adv > 0:
                g_adv = g_loss_fn(discriminate(d, sr_img, settings.policy, instance_noise).float())
                g_total = g_total + settings.lambda_adv * g_adv
                stats["g/adv"] = g_adv.item()
        opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        opt_g.step()
    ema_update(g_ema, g, ema_decay)
    stats["g/total"] = g_total.item()
    return stats
