"""A feature network trained on the HR train slices: the offline alternative to VGG19 for the SR perceptual loss.

Without ImageNet weights (none can be downloaded here), VGG19 is a fixed random network, a texture-statistics
proxy with no notion of what an MR slice looks like. This is a small denoising autoencoder (Vincent et al. 2008)
trained on the same HR crops the SR generator learns from: to restore a noisy HR crop its encoder must encode
edges, tissue boundaries and their sharpness, which is what a perceptual distance between an SR output and its
HR slice should compare. Its encoder's activations at full and half resolution are the features.

Written here because neither MONAI nor torchvision ships an MR-trained perceptual network of this kind.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from src.losses.perceptual import feature_l1

NOISE_STD = 0.1  # of the corruption the autoencoder learns to undo, on the [-1, 1] scale (5 % of the range)


class HRFeatureEncoder(nn.Module):
    """conv-ReLU x2 at full resolution (`width` channels), then x2 at half resolution (2 `width`).
    forward returns both blocks' outputs: the features the perceptual loss compares."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.full_resolution = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.half_resolution = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        full = self.full_resolution(x)
        return [full, self.half_resolution(full)]


class HRDenoisingAutoencoder(nn.Module):
    """The encoder and a decoder that maps its half-resolution features back to an image (training only)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.encoder = HRFeatureEncoder(width)
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.out = nn.Conv2d(2 * width, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full, half = self.encoder(x)
        # U-Net-style skip from the full-resolution block: the decoder restores detail, not only layout
        return x + self.out(torch.cat([F.relu(self.up(half)), full], dim=1))


def train_hr_features(hr_batches: Callable[[int], torch.Tensor], steps: int, seed: int, device: torch.device,
                      lr: float = 1e-3, width: int = 32) -> tuple[HRFeatureEncoder, dict[str, float]]:
    """Train the denoising autoencoder for `steps` Adam steps on hr_batches(step) ((N, 1, H, W) HR crops in
    [-1, 1]); returns its frozen encoder in eval mode and {"first_l1", "last_l1"} of the restoration.

    Deterministic in `seed`: the weights and the noise come from their own generators, and the caller's global
    RNG is left as it was, so choosing this network does not change any other draw of the run. fp32 throughout:
    it is a few seconds of training, and its features must not depend on the CPU's bf16 support."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HRDenoisingAutoencoder(width).to(device)
    noise_gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        hr_img = hr_batches(step).to(device).float()
        noisy = hr_img + NOISE_STD * torch.randn(hr_img.shape, generator=noise_gen).to(device)
        loss = F.l1_loss(model(noisy), hr_img)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    encoder = model.encoder.eval().requires_grad_(False)
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    return encoder, {"first_l1": first, "last_l1": last}


class FeaturePerceptualLoss(nn.Module):
    """sum over the encoder's feature maps of mean |phi(pred) - phi(target)| (L1 in feature space, reduced in
    float32 under bf16 autocast: `feature_l1`, as VGGPerceptualLoss does for VGG layers). The encoder is frozen;
    gradients flow to `pred` only."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FeaturePerceptualLoss:
        super().train(mode)
        self.encoder.eval()  # a frozen feature network stays in eval mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:  # F.l1_loss would broadcast them, with only a warning
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        with torch.no_grad():
            target_features = self.encoder(target.float())
        pred_features = self.encoder(pred.float())
        return feature_l1(pred_features, target_features, [1.0] * len(pred_features))
