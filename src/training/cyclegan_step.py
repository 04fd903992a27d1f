"""CycleGAN step (Zhu et al. 2017) with VGG content and CyCADA semantic consistency (Hoffman et al. 2018).

One call = one G update of both generators, then one D update of both discriminators,
as junyanz's `optimize_parameters()`. DiffAugment reaches D only through `discriminate`:
real and pooled fake images in the D step, fake images in the G step; never the cycle,
identity, perceptual or semantic inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.adversarial import D_LOSSES, G_LOSSES
from src.losses.semantic import pseudo_labels, semantic_ce
from src.training.gan_utils import ImagePool, discriminate, frozen, real_sign
from src.training.runtime import Runtime


@dataclass(frozen=True)
class CycleGANWeights:
    """The `train.lambda_*` params; a weight of 0 skips the term's computation."""

    adv: float
    cycle: float
    identity: float
    percep: float
    semantic: float


@dataclass
class CycleGANNets:
    g_sim2real: nn.Module
    g_real2sim: nn.Module
    d_real: nn.Module        # tells real images from fake_real
    d_sim: nn.Module         # tells sim images from fake_sim


def cyclegan_step(nets: CycleGANNets, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                  pool_real: ImagePool, pool_sim: ImagePool, perceptual: nn.Module | None,
                  segmenter: nn.Module | None, sim: torch.Tensor, sim_labels: torch.Tensor, real: torch.Tensor,
                  weights: CycleGANWeights, gan_loss: str, policy: str, runtime: Runtime) -> dict[str, float]:
    """sim, real: (N, 1, H, W) in [-1, 1]; sim_labels: (N, H, W). Returns slash-namespaced stats."""
    d_loss_fn, g_loss_fn = D_LOSSES[gan_loss], G_LOSSES[gan_loss]
    stats: dict[str, float] = {}

    # G step: both generators, discriminators frozen.
    with frozen(nets.d_real), frozen(nets.d_sim), runtime.autocast():
        fake_real = nets.g_sim2real(sim)
        fake_sim = nets.g_real2sim(real)
        terms: dict[str, torch.Tensor] = {}
        if weights.adv > 0:
            terms["adv"] = (g_loss_fn(discriminate(nets.d_real, fake_real, policy).float())
                            + g_loss_fn(discriminate(nets.d_sim, fake_sim, policy).float()))
        if weights.cycle > 0:
            rec_sim = nets.g_real2sim(fake_real)
            rec_real = nets.g_sim2real(fake_sim)
            terms["cycle"] = F.l1_loss(rec_sim.float(), sim) + F.l1_loss(rec_real.float(), real)
        if weights.identity > 0:
            terms["identity"] = (F.l1_loss(nets.g_sim2real(real).float(), real)
                                 + F.l1_loss(nets.g_real2sim(sim).float(), sim))
        if weights.percep > 0 and perceptual is not None:
            # Content: fake_real must keep sim's VGG features (SPIGAN-style regulariser).
            terms["percep"] = perceptual(fake_real, sim).float()
        if weights.semantic > 0 and segmenter is not None:
            # CyCADA: the frozen segmenter must find the simulator's labels in fake_real,
            # and its own prediction on real in fake_sim.
            terms["semantic"] = (semantic_ce(segmenter, fake_real, sim_labels)
                                 + semantic_ce(segmenter, fake_sim, pseudo_labels(segmenter, real)))
        g_total = sum((getattr(weights, name) * value for name, value in terms.items()),
                      torch.zeros((), device=sim.device))
    opt_g.zero_grad(set_to_none=True)
    g_total.backward()
    opt_g.step()
    stats.update({f"g/{name}": value.item() for name, value in terms.items()})
    stats["g/total"] = g_total.item()

    # D step: reals against pooled, detached fakes (Shrivastava et al. 2017 history).
    fake_real_pooled = pool_real.query(fake_real.detach())
    fake_sim_pooled = pool_sim.query(fake_sim.detach())
    with runtime.autocast():
        d_real_on_real = discriminate(nets.d_real, real, policy).float()
        d_real_on_fake = discriminate(nets.d_real, fake_real_pooled, policy).float()
        d_sim_on_sim = discriminate(nets.d_sim, sim, policy).float()
        d_sim_on_fake = discriminate(nets.d_sim, fake_sim_pooled, policy).float()
        # 0.5: slows D relative to G, as in the CycleGAN paper.
        d_real_loss = 0.5 * d_loss_fn(d_real_on_real, d_real_on_fake)
        d_sim_loss = 0.5 * d_loss_fn(d_sim_on_sim, d_sim_on_fake)
    opt_d.zero_grad(set_to_none=True)
    (d_real_loss + d_sim_loss).backward()
    opt_d.step()
    for name, loss, on_real, on_fake in (("d_real", d_real_loss, d_real_on_real, d_real_on_fake),
                                         ("d_sim", d_sim_loss, d_sim_on_sim, d_sim_on_fake)):
        stats[f"{name}/adv"] = loss.item()
        stats[f"{name}/real_score"] = on_real.mean().item()
        stats[f"{name}/fake_score"] = on_fake.mean().item()
        stats[f"{name}/real_sign"] = real_sign(on_real.detach(), gan_loss)
    return stats
