"""Adversarial losses as separate discriminator (`d_loss_*`) and generator (`g_loss_*`) functions, and R1.

All take raw logits of any shape (a PatchGAN's (N, 1, h, w) map or (N, 1)) and average over
every element, so each patch counts as one decision. Each D loss is the sum of its real and
fake terms (no 1/2 factor; CycleGAN's 0.5 * L_D is the caller's choice). Returned values are
0-dim tensors.

label_smoothing s is one-sided (Salimans et al. 2016, "Improved Techniques for Training
GANs", sec. 3.4): only the real target moves, 1 -> 1 - s; fakes keep their target, since
smoothing them would reward D for leaving fakes in place.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


def d_loss_nonsaturating(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """-E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))] (Goodfellow et al. 2014, eq. 1), as BCE on logits.

    With smoothing the real term is BCE against 1 - s, whose minimum is the entropy of
    Bernoulli(1 - s) > 0, reached at D(x) = logit(1 - s) instead of +inf.
    """
    _check_smoothing(label_smoothing)
    real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
    real_term = F.binary_cross_entropy_with_logits(real_logits, real_target)
    fake_term = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real_term + fake_term


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log sigmoid(D(G(z)))] = E[softplus(-D(G(z)))] (Goodfellow et al. 2014, sec. 3, the non-saturating G loss)."""
    return F.softplus(-fake_logits).mean()


def d_loss_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """E[(D(x) - (1 - s))^2] + E[D(G(z))^2] (Mao et al. 2017, LSGAN with targets a=0, b=1).

    Without the paper's 1/2 factors, as junyanz's CycleGAN (MSELoss) does.
    """
    _check_smoothing(label_smoothing)
    return (real_logits - (1.0 - label_smoothing)).square().mean() + fake_logits.square().mean()


def g_loss_lsgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """E[(D(G(z)) - 1)^2] (Mao et al. 2017, c=1)."""
    return (fake_logits - 1.0).square().mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """E[relu(1 - s - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017, Geometric GAN; Miyato et al. 2018, SN-GAN).

    Hinge has no target to smooth; here s lowers the real margin from 1 to 1 - s, the
    analogue of a softer real target: D stops being pushed on reals once D(x) >= 1 - s.
    s = 0 is the standard hinge loss.
    """
    _check_smoothing(label_smoothing)
    return F.relu((1.0 - label_smoothing) - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return -fake_logits.mean()


def d_loss_relativistic(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Relativistic average D (Jolicoeur-Martineau 2019, RaGAN; ESRGAN's D, Wang et al. 2018, eq. 2).

    D_Ra(x_r, x_f) = sigmoid(C(x_r) - E[C(x_f)]): D judges whether a real image is more realistic than
    the fakes on average, and a fake less realistic than the reals, so G's gradient also depends on the
    real images (ESRGAN: sharper edges, more detailed textures). The non-saturating loss of those relative
    logits, summed as the other D losses here (chance is 2 ln 2); BasicSR's ESRGANModel halves each term,
    which Adam's scale invariance makes the same update. The means run over every element of the batch's
    logits (for a PatchGAN, every patch of every image), as BasicSR's `torch.mean(fake_d_pred)`.
    """
    return d_loss_nonsaturating(real_logits - fake_logits.mean(), fake_logits - real_logits.mean(),
                                label_smoothing)


def g_loss_relativistic(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN's G loss (Wang et al. 2018, eq. 3): the relativistic D loss with the labels swapped.

    -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)], averaged over the two terms as BasicSR's
    ESRGANModel does, so that ESRGAN's weight 5e-3 means the same here. `real_logits` must be detached by
    the caller (BasicSR's `net_d(gt).detach()`): the real term still reaches G through E[C(x_f)].
    """
    real_term = F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits))
    fake_term = F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits))
    return 0.5 * (real_term + fake_term)


D_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "nonsaturating": d_loss_nonsaturating,
    "lsgan": d_loss_lsgan,
    "hinge": d_loss_hinge,
    "relativistic": d_loss_relativistic,
}

G_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "nonsaturating": g_loss_nonsaturating,
    "lsgan": g_loss_lsgan,
    "hinge": g_loss_hinge,
}
# G losses that also read D's logits on the real batch: g_loss(fake_logits, real_logits).
RELATIVISTIC_G_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relativistic": g_loss_relativistic,
}


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 = E_x ||grad_x D(x)||^2 on real images, without the gamma/2 factor.

    Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do actually Converge?".

    real_logits: D's output on `real_images`, which must require grad (call
    `real_images.requires_grad_(True)` before D). For a map-valued D (PatchGAN) the gradient
    is that of each image's summed logits, the usual cheap generalisation of a scalar D. The
    graph is kept (create_graph=True) so the penalty trains D. The caller multiplies by
    gamma / 2. Returns a 0-dim tensor (at least float32); exactly 0 if D does not use its input.
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require grad for the R1 penalty; call requires_grad_(True) before D")
    (grad,) = torch.autograd.grad(
        outputs=real_logits.sum(), inputs=real_images, create_graph=True, allow_unused=True
    )
    if grad is None:
        return torch.zeros((), device=real_images.device)
    return grad.to(torch.promote_types(grad.dtype, torch.float32)).square().flatten(1).sum(dim=1).mean()
