"""SRResNet generator without batch norm, learning a residual over the degradation's naive upsampling.

Architecture: SRResNet (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution
Using a GAN") in the BasicSR `MSRResNet` form (Wang et al. 2018, ESRGAN: no batch norm,
Kaiming init scaled by 0.1 so each residual block starts near identity), keeping SRResNet's
conv + skip over the residual trunk. The global skip adds `naive_upsample` of the matching
degradation (zero-fill for k-space, bicubic for bicubic) instead of MSRResNet's bilinear,
so an untrained network already equals the honest baseline and learns only what it misses.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.data.degrade import DEGRADATIONS, data_consistent, naive_upsample


def _init_scaled_kaiming(conv: nn.Conv2d, scale: float = 0.1) -> None:
    """BasicSR `default_init_weights`: Kaiming normal (fan_in, ReLU gain) times `scale`, zero bias."""
    nn.init.kaiming_normal_(conv.weight)
    with torch.no_grad():
        conv.weight.mul_(scale)
    nn.init.zeros_(conv.bias)


class ResidualBlockNoBN(nn.Module):
    """x + conv(relu(conv(x))), no batch norm (Lim et al. 2017, EDSR; ESRGAN: BN causes artefacts in SR)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        _init_scaled_kaiming(self.conv1)
        _init_scaled_kaiming(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class SRResNet(nn.Module):
    """lr_img (N, C, h, w) in [-1, 1] -> sr_img (N, C, h*scale, w*scale) = naive_upsample(lr_img) + residual.

    scale: a power of 2 (>= 2); one conv + PixelShuffle(2) stage per factor 2 (Shi et al.
    2016). degradation: "kspace" or "bicubic", selecting the global skip. No output tanh.
    clamp_output: clamp the output to the data range [-1, 1] in training too (evaluation always clamps).
    HR's background is exactly -1 (prepare's window clamps it), and below -1 the clamp passes no gradient, so G
    reaches that exact floor by overshooting it; without the clamp only an exact cancellation of the naive
    upsampling's ringing gets there, and a faint residue (a few thousandths, in over 40 % of the air) stays.
    data_consistency (k-space only): keep only the residual's unmeasured frequencies
    (`data_consistent`), so the output re-degrades to the LR input exactly (float32 output);
    data_consistency_band < 1: only below that fraction of the cut-off. With the projection the clamp
    buys no flat air: the projection puts back the measured band's ringing, which reaches the air
    (benchmarks/sr_swd_levels.py, sr_gan_screen.py).
    """

    def __init__(self, scale: int, degradation: str, channels: int = 64, blocks: int = 16, in_channels: int = 1,
                 data_consistency: bool = False, clamp_output: bool = False,
                 data_consistency_band: float = 1.0) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of 2 (2, 4, 8, ...), got {scale}")
        if degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
        if data_consistency and degradation != "kspace":
            raise ValueError(f"data_consistency projects onto measured k-space; it has no exact form for "
                             f"{degradation!r} degradation")
        self.scale = scale
        self.degradation = degradation
        self.data_consistency = data_consistency
        self.clamp_output = clamp_output
        self.data_consistency_band = data_consistency_band
        self.conv_first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(channels) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        upsample: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            upsample += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.1)]
        self.upsample = nn.Sequential(*upsample)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, in_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        for conv in (self.conv_first, self.conv_body, self.conv_hr, self.conv_last):
            _init_scaled_kaiming(conv)
        for module in self.upsample:
            if isinstance(module, nn.Conv2d):
                _init_scaled_kaiming(module)

    def forward(self, lr_img: torch.Tensor, naive_img: torch.Tensor | None = None) -> torch.Tensor:
        """naive_img: the naive upsampling of the WHOLE acquisition, cropped like lr_img.

        Give it when lr_img is a training crop: zero-filling treats its input as periodic,
        so zero-filling a crop rings at the crop's edges, which a whole image (background
        at its border) does not. Left out, it is computed from lr_img (whole images).
        """
        if naive_img is None:
            naive_img = naive_upsample(lr_img, self.scale, self.degradation)
        feat = self.lrelu(self.conv_first(lr_img))
        trunk = self.conv_body(self.body(feat)) + feat
        residual = self.conv_last(self.lrelu(self.conv_hr(self.upsample(trunk))))
        sr_img = (data_consistent(naive_img, residual, self.scale, self.data_consistency_band)
                  if self.data_consistency else naive_img + residual)
        return sr_img.clamp(-1, 1) if self.clamp_output else sr_img
