"""The textbook GAN steps: the same networks and losses called the straightforward way.

Reference implementations for the head-to-head in `benchmarks/run.py` and for the test
that the fused steps in `src/training/` compute the same losses and gradients: six
separate generator calls per CycleGAN step (junyanz's `forward()` + `backward_G()`), one
discriminator call per image set, fp32, contiguous tensors. They take the same parts as
the project's steps, so only the way the networks are called differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.losses.adversarial import D_LOSSES, G_LOSSES, r1_penalty
from src.losses.semantic import pseudo_labels, semantic_ce
from src.losses.structure import mind_loss
from src.training.cyclegan_step import CycleGANBatch, CycleGANCritics, CycleGANNets, CycleGANOptimizers, CycleGANSettings
from src.training.gan_utils import discriminate, ema_update, frozen
from src.training.sr_steps import SRBatch, SRCritics, SRGanSettings, SRNets, SROptimizers


def textbook_cyclegan_step(nets: CycleGANNets, optimizers: CycleGANOptimizers, critics: CycleGANCritics,
                           batch: CycleGANBatch, settings: CycleGANSettings) -> dict[str, float]:
    s = settings
    d_loss_fn, g_loss_fn = D_LOSSES[s.gan_loss], G_LOSSES[s.gan_loss]
    sim, sim_labels, real = batch.sim, batch.sim_labels, batch.real
    with frozen(nets.d_real), frozen(nets.d_sim):
        fake_real, fake_sim = nets.g_sim2real(sim), nets.g_real2sim(real)
        g_total = torch.zeros(())
        stats = {}
        if s.lambda_adv > 0:
            adv = (g_loss_fn(discriminate(nets.d_real, fake_real, s.policy))
                   + g_loss_fn(discriminate(nets.d_sim, fake_sim, s.policy)))
            g_total, stats["g/adv"] = g_total + s.lambda_adv * adv, adv.item()
        if s.lambda_cycle > 0:
            cycle = F.l1_loss(nets.g_real2sim(fake_real), sim) + F.l1_loss(nets.g_sim2real(fake_sim), real)
            g_total, stats["g/cycle"] = g_total + s.lambda_cycle * cycle, cycle.item()
        if s.lambda_identity > 0:
            identity = F.l1_loss(nets.g_sim2real(real), real) + F.l1_loss(nets.g_real2sim(sim), sim)
            g_total, stats["g/identity"] = g_total + s.lambda_identity * identity, identity.item()
        if s.lambda_percep > 0:
            percep = critics.perceptual(fake_real, sim)
            g_total, stats["g/percep"] = g_total + s.lambda_percep * percep, percep.item()
        if s.lambda_semantic > 0:
            semantic = (semantic_ce(critics.segmenter, fake_real, sim_labels)
                        + semantic_ce(critics.segmenter, fake_sim, pseudo_labels(critics.segmenter, real)))
            g_total, stats["g/semantic"] = g_total + s.lambda_semantic * semantic, semantic.item()
        if s.lambda_structure > 0:
            structure = mind_loss(fake_real, sim) + mind_loss(fake_sim, real)
            g_total, stats["g/structure"] = g_total + s.lambda_structure * structure, structure.item()
    optimizers.g.zero_grad(set_to_none=True)
    g_total.backward()
    optimizers.g.step()
    stats["g/total"] = g_total.item()

    fake_real_pooled = critics.pool_real.query(fake_real.detach())
    fake_sim_pooled = critics.pool_sim.query(fake_sim.detach())
    d_real_loss = 0.5 * d_loss_fn(discriminate(nets.d_real, real, s.policy),
                                  discriminate(nets.d_real, fake_real_pooled, s.policy))
    d_sim_loss = 0.5 * d_loss_fn(discriminate(nets.d_sim, sim, s.policy),
                                 discriminate(nets.d_sim, fake_sim_pooled, s.policy))
    optimizers.d.zero_grad(set_to_none=True)
    (d_real_loss + d_sim_loss).backward()
    optimizers.d.step()
    stats["d_real/adv"], stats["d_sim/adv"] = d_real_loss.item(), d_sim_loss.item()
    return stats


def textbook_sr_gan_step(nets: SRNets, optimizers: SROptimizers, critics: SRCritics, batch: SRBatch,
                         settings: SRGanSettings, *, ema_decay: float) -> dict[str, float]:
    s = settings
    d_loss_fn, g_loss_fn = D_LOSSES[s.gan_loss], G_LOSSES[s.gan_loss]
    sr_img = nets.g(batch.lr_img, batch.naive_img)
    real_in = batch.hr_img.detach().requires_grad_(s.r1_gamma > 0)
    real_logits = discriminate(nets.d, real_in, s.policy)
    fake_logits = discriminate(nets.d, sr_img.detach(), s.policy)
    d_total = d_loss_fn(real_logits, fake_logits, label_smoothing=s.label_smoothing)
    stats = {"d/adv": d_total.item()}
    if s.r1_gamma > 0:
        d_total = d_total + 0.5 * s.r1_gamma * r1_penalty(real_logits, real_in)
    optimizers.d.zero_grad(set_to_none=True)
    d_total.backward()
    optimizers.d.step()
    with frozen(nets.d):
        g_total = s.lambda_pixel * F.l1_loss(sr_img, batch.hr_img)
        if s.lambda_percep > 0:
            g_total = g_total + s.lambda_percep * critics.perceptual(sr_img, batch.hr_img)
        if s.lambda_adv > 0:
            g_total = g_total + s.lambda_adv * g_loss_fn(discriminate(nets.d, sr_img, s.policy))
        optimizers.g.zero_grad(set_to_none=True)
        g_total.backward()
        optimizers.g.step()
    ema_update(nets.g_ema, nets.g, ema_decay)
    stats["g/total"] = g_total.item()
    return stats
