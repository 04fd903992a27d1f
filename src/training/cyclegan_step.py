"""CycleGAN step (Zhu et al. 2017) with VGG content, CyCADA semantic consistency (Hoffman et al. 2018)
and MIND structure consistency (Yang et al. 2018).

One call = one G update of both generators, then one D update of both discriminators,
as junyanz's `optimize_parameters()`. DiffAugment reaches D only through `discriminate`
/ `discriminate_pair`: real and pooled fake images in the D step, fake images in the G
step; never the cycle, identity, perceptual or semantic inputs.

Fused passes, same algorithm: with instance norm every sample is normalised on its own, so
a generator applied to a concatenated batch equals the generator applied to each part.
`g_sim2real([sim, real])` yields `fake_real` and the identity output `idt_real` in one
call (likewise `g_real2sim`), and each D scores reals and pooled fakes in one call: four
generator calls a step instead of six and one D call per D step instead of two. The
textbook six-call step (`benchmarks/textbook.py`) gives the same losses and gradients;
a test holds them together.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from src.config import GanLoss
from src.losses.adversarial import D_LOSSES, G_LOSSES
from src.losses.semantic import pseudo_labels, semantic_ce
from src.losses.structure import mind_loss
from src.training.distributed import SINGLE, Distributed, unwrap
from src.training.gan_utils import ImagePool, discriminate, discriminate_pair, frozen, real_sign
from src.training.runtime import Runtime


@dataclass(frozen=True, kw_only=True)
class CycleGANSettings:
    """The `train.lambda_*` weights (0 skips a term's computation) and the loss choices."""

    lambda_adv: float
    lambda_cycle: float
    lambda_identity: float
    lambda_percep: float
    lambda_semantic: float
    gan_loss: GanLoss
    policy: str              # DiffAugment policy, "" = none
    reconstruction_beta: float = 0.0  # cycle/identity: Huber (smooth L1) with this beta; 0 = plain L1
    lambda_structure: float = 0.0     # MIND structure term (Yang et al. 2018): G(x) keeps x's self-similarity


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """L1, or Huber with `beta` > 0: quadratic below beta, so a generator at the identity is not pinned.

    Plain L1's gradient has the same size for any non-zero error: at a refiner's identity start
    every move costs lambda * |move| at once, which outweighs the adversarial gain of a small
    move, and the refiner never leaves the identity. Huber's cost starts at move^2 / (2 beta).
    """
    if beta == 0:
        return F.l1_loss(output, target)
    return F.smooth_l1_loss(output, target, beta=beta)


@dataclass(frozen=True)
class CycleGANNets:
    """Under DDP each is a DistributedDataParallel wrapper (src/training/distributed.py)."""

    g_sim2real: nn.Module
    g_real2sim: nn.Module
    d_real: nn.Module        # tells real images from fake_real
    d_sim: nn.Module         # tells sim images from fake_sim


@dataclass(frozen=True)
class CycleGANOptimizers:
    g: torch.optim.Optimizer  # both generators, as junyanz
    d: torch.optim.Optimizer  # both discriminators


@dataclass(frozen=True)
class CycleGANCritics:
    """What judges G besides D: the fake-image pools and the content networks.

    Built with the settings, so a positive content weight without its network fails
    here, at construction, instead of silently dropping the term.
    """

    pool_real: ImagePool
    pool_sim: ImagePool
    perceptual: nn.Module | None
    segmenter: nn.Module | None
    settings: InitVar[CycleGANSettings]

    def __post_init__(self, settings: CycleGANSettings) -> None:
        if settings.lambda_percep > 0 and self.perceptual is None:
            raise ValueError(f"train.lambda_percep is {settings.lambda_percep} but no perceptual network was given")
        if settings.lambda_semantic > 0 and self.segmenter is None:
            raise ValueError(f"train.lambda_semantic is {settings.lambda_semantic} but no segmenter was given")


@dataclass(frozen=True)
class CycleGANBatch:
    sim: torch.Tensor          # (N, 1, H, W) in [-1, 1]
    sim_labels: torch.Tensor   # (N, H, W) class indices of sim
    real: torch.Tensor         # (N, 1, H, W) in [-1, 1], unpaired with sim


def pooled(pool: ImagePool, fakes: torch.Tensor, dist: Distributed = SINGLE) -> torch.Tensor:
    """This rank's part of the pool's answer for the global batch of fakes.

    The pool is global: every rank gathers all ranks' fakes, queries its copy of the pool
    with the same generator, and keeps its own part. The copies stay identical on every
    rank, and equal to the pool of a single process fed the whole batch, so a checkpoint
    needs rank 0's copy only and a run does not depend on the number of ranks.
    """
    return dist.my_part(pool.query(dist.gather_batch(fakes)))


def cyclegan_step(nets: CycleGANNets, optimizers: CycleGANOptimizers, critics: CycleGANCritics,
                  batch: CycleGANBatch, settings: CycleGANSettings, runtime: Runtime,
                  dist: Distributed = SINGLE) -> dict[str, float]:
    """One G update and one D update; returns slash-namespaced stats (`g/cycle`, `d_real/adv`, ...)."""
    s = settings
    d_loss_fn, g_loss_fn = D_LOSSES[s.gan_loss], G_LOSSES[s.gan_loss]
    sim, sim_labels, real = batch.sim, batch.sim_labels, batch.real
    n = sim.shape[0]

    # G step: both generators, discriminators frozen and called unwrapped (not updated here:
    # a DDP forward whose parameters get no gradient would leave DDP waiting for them).
    d_real, d_sim = unwrap(nets.d_real), unwrap(nets.d_sim)
    with frozen(d_real), frozen(d_sim), runtime.autocast():
        if s.lambda_identity > 0:
            fake_real, idt_real = nets.g_sim2real(torch.cat([sim, real])).split([n, real.shape[0]])
            fake_sim, idt_sim = nets.g_real2sim(torch.cat([real, sim])).split([real.shape[0], n])
        else:
            fake_real, fake_sim = nets.g_sim2real(sim), nets.g_real2sim(real)
        terms: dict[str, torch.Tensor] = {}
        if s.lambda_adv > 0:
            terms["adv"] = (g_loss_fn(discriminate(d_real, fake_real, s.policy).float())
                            + g_loss_fn(discriminate(d_sim, fake_sim, s.policy).float()))
        if s.lambda_cycle > 0:
            rec_sim, rec_real = nets.g_real2sim(fake_real), nets.g_sim2real(fake_sim)
            terms["cycle"] = (reconstruction_loss(rec_sim.float(), sim, s.reconstruction_beta)
                              + reconstruction_loss(rec_real.float(), real, s.reconstruction_beta))
        if s.lambda_identity > 0:
            terms["identity"] = (reconstruction_loss(idt_real.float(), real, s.reconstruction_beta)
                                 + reconstruction_loss(idt_sim.float(), sim, s.reconstruction_beta))
        if s.lambda_structure > 0:
            # Content that leaves the contrast free: each translation keeps its input's MIND descriptor
            # (edges and their layout, whatever the tissue order), src/losses/structure.py.
            terms["structure"] = mind_loss(fake_real, sim) + mind_loss(fake_sim, real)
        if s.lambda_percep > 0:
            # Content: fake_real must keep sim's VGG features (SPIGAN-style regulariser).
            terms["percep"] = critics.perceptual(fake_real, sim).float()
        if s.lambda_semantic > 0:
            # CyCADA: the frozen segmenter must find the simulator's labels in fake_real,
            # and its own prediction on real in fake_sim.
            terms["semantic"] = (semantic_ce(critics.segmenter, fake_real, sim_labels)
                                 + semantic_ce(critics.segmenter, fake_sim, pseudo_labels(critics.segmenter, real)))
        weights = {"adv": s.lambda_adv, "cycle": s.lambda_cycle, "identity": s.lambda_identity,
                   "percep": s.lambda_percep, "semantic": s.lambda_semantic, "structure": s.lambda_structure}
        g_total = sum((weights[name] * value for name, value in terms.items()), torch.zeros((), device=sim.device))
    optimizers.g.zero_grad(set_to_none=True)
    g_total.backward()
    optimizers.g.step()
    stats = {f"g/{name}": value.item() for name, value in terms.items()}
    stats["g/total"] = g_total.item()

    # D step: reals against pooled, detached fakes (Shrivastava et al. 2017 history).
    fake_real_pooled = pooled(critics.pool_real, fake_real.detach(), dist)
    fake_sim_pooled = pooled(critics.pool_sim, fake_sim.detach(), dist)
    with runtime.autocast():
        d_real_on_real, d_real_on_fake = discriminate_pair(nets.d_real, real, fake_real_pooled, s.policy)
        d_sim_on_sim, d_sim_on_fake = discriminate_pair(nets.d_sim, sim, fake_sim_pooled, s.policy)
    # 0.5: slows D relative to G, as in the CycleGAN paper.
    d_real_loss = 0.5 * d_loss_fn(d_real_on_real.float(), d_real_on_fake.float())
    d_sim_loss = 0.5 * d_loss_fn(d_sim_on_sim.float(), d_sim_on_fake.float())
    optimizers.d.zero_grad(set_to_none=True)
    (d_real_loss + d_sim_loss).backward()
    optimizers.d.step()
    for name, loss, on_real, on_fake in (("d_real", d_real_loss, d_real_on_real, d_real_on_fake),
                                         ("d_sim", d_sim_loss, d_sim_on_sim, d_sim_on_fake)):
        stats[f"{name}/adv"] = loss.item()
        stats[f"{name}/real_score"] = on_real.float().mean().item()
        stats[f"{name}/fake_score"] = on_fake.float().mean().item()
        stats[f"{name}/real_sign"] = real_sign(on_real.detach(), s.gan_loss)
    return stats
