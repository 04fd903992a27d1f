"""Small helpers shared by the GAN step functions: freezing, the discriminator choke point, image pool, EMA."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from src.augment.diffaugment import diff_augment


@contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """Freeze `net` for the other player's update; restore its flags afterwards."""
    flags = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    try:
        yield net
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


def discriminate(d: nn.Module, images: torch.Tensor, policy: str, instance_noise_std: float = 0.0) -> torch.Tensor:
    """The only way D is called: the same DiffAugment policy for reals and fakes, in both steps.

    images: (N, C, H, W) in [-1, 1]. The augmented images get optional Gaussian instance
    noise of std `instance_noise_std` (Sønderby et al. 2017; Arjovsky & Bottou 2017: it makes
    the real and fake distributions overlap), drawn from the global RNG. Returns D's logits
    (for a PatchGAN, (N, 1, h, w)). Differentiable w.r.t. `images`.
    """
    return d(_augment(images, policy, instance_noise_std))


def discriminate_pair(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, policy: str,
                      instance_noise_std: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`discriminate(d, real)` and `discriminate(d, fake)` in one D call: (real_logits, fake_logits).

    Each part is augmented on its own, in that order, so the random draws are those of
    two separate calls; D (no batch statistics: spectral or instance norm) then scores the
    concatenation, which equals scoring each part. One difference from two calls: a
    spectrally normalised D runs its power iteration once, not twice.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules()):
        raise ValueError("discriminate_pair: D has batch normalisation, so scoring [real, fake] together would mix "
                         "their statistics; call discriminate twice")
    augmented = torch.cat([_augment(real, policy, instance_noise_std), _augment(fake, policy, instance_noise_std)])
    return d(augmented).split([real.shape[0], fake.shape[0]])


def _augment(images: torch.Tensor, policy: str, instance_noise_std: float) -> torch.Tensor:
    if instance_noise_std < 0:
        raise ValueError(f"instance_noise_std must be >= 0, got {instance_noise_std}")
    images = diff_augment(images, policy)
    if instance_noise_std > 0:
        images = images + instance_noise_std * torch.randn_like(images)
    return images


class ImagePool:
    """History of generated images for the discriminator update (Shrivastava et al. 2017, SimGAN).

    As junyanz/pytorch-CycleGAN-and-pix2pix `util/image_pool.py`: per image, while the pool
    holds fewer than `size` images, store it and return it; once full, with probability 0.5
    return a uniformly chosen stored image and put the new one in its place, otherwise
    return the new image. `size == 0` disables the pool. Stored and returned images are
    detached (D's update must not flow into G).

    The coin flips and indices come from `generator` (a CPU torch.Generator; a private one
    seeded from the global RNG if None), so a run is deterministic; `state_dict()` holds the
    stored images and the generator state, so a resumed run returns what an uninterrupted
    one would.
    """

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, C, H, W) fresh fakes -> (N, C, H, W) detached mix of fresh and historical fakes."""
        if self.size == 0:
            return images
        returned = []
        for image in images.detach():
            image = image.clone()
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(0, self.size, (), generator=self.generator).item())
                returned.append(self.images[index])
                self.images[index] = image
            else:
                returned.append(image)
        return torch.stack(returned)

    def state_dict(self) -> dict[str, Any]:
        """{"images": (k, C, H, W) stored images (k <= size; shape (0,) when empty), "rng_state": generator state}."""
        images = torch.stack(self.images) if self.images else torch.empty(0)
        return {"images": images, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if images.shape[0] > self.size:
            raise ValueError(f"checkpoint pool holds {images.shape[0]} images, more than this pool's size {self.size}")
        self.images = [image.clone() for image in images]
        self.generator.set_state(state["rng_state"])


@torch.no_grad()
def ema_update(ema_net: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for parameters; buffers (e.g. norm statistics) copied.

    Both networks must have the same architecture; the parameters are matched by name.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    ema_params = dict(ema_net.named_parameters())
    params = dict(net.named_parameters())
    if ema_params.keys() != params.keys():
        raise ValueError("ema_net and net have different parameters")
    for name, p in params.items():
        ema_params[name].lerp_(p.detach(), 1.0 - decay)
    ema_buffers = dict(ema_net.named_buffers())
    for name, b in net.named_buffers():
        ema_buffers[name].copy_(b)


def real_sign(real_logits: torch.Tensor, gan_loss: str, fake_logits: torch.Tensor | None = None) -> float:
    """ADA overfitting heuristic r_t = E[sign(D(real) - c)].

    Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (ADA).

    c is D's decision boundary: 0 for "nonsaturating" and "hinge" logits, 0.5 for "lsgan"
    (targets {0, 1}), and for "relativistic" the mean logit of the fakes it was compared with
    (`fake_logits`, required then). In [-1, 1]; near 1 means D is confidently right on every real image,
    the sign of overfitting. Averages over all logits (for a PatchGAN, over all patches).
    """
    boundary = decision_boundary(gan_loss)
    if boundary is None:
        if fake_logits is None:
            raise ValueError(f"gan_loss {gan_loss!r} compares reals with the fakes' mean logit: pass fake_logits")
        boundary = fake_logits.detach().float().mean()
    return torch.sign(real_logits.detach().float() - boundary).mean().item()


def decision_boundary(gan_loss: str) -> float | None:
    """The logit where D switches from "fake" to "real": 0 for nonsaturating and hinge, 0.5 for LSGAN's {0, 1} targets.

    None for "relativistic": RaGAN has no fixed boundary; it calls a real image real when its logit is above the
    fakes' mean and a fake fake when below the reals' mean (`d_monitor.balanced_accuracy` with boundary None).
    """
    if gan_loss == "lsgan":
        return 0.5
    if gan_loss in ("nonsaturating", "hinge"):
        return 0.0
    if gan_loss == "relativistic":
        return None
    raise ValueError(f"unknown gan_loss {gan_loss!r}; expected 'nonsaturating', 'lsgan', 'hinge' or 'relativistic'")
