"""CycleGAN ResNet generator (Zhu et al. 2017; Johnson et al. 2016) with resize-convolution upsampling."""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Conv with junyanz's `init_type="normal"`: weights N(0, 0.02), zero bias."""
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
    nn.init.normal_(layer.weight, 0.0, 0.02)
    nn.init.zeros_(layer.bias)
    return layer


class ResnetBlock(nn.Module):
    """x + [pad-conv3x3-IN-ReLU-pad-conv3x3-IN](x), reflection padding (junyanz `ResnetBlock`, no dropout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), _conv(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), _conv(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """(N, C, H, W) in [-1, 1] -> (N, C, H, W) in (-1, 1) (tanh); H and W divisible by 4.

    junyanz `ResnetGenerator`: reflection-pad + conv7x7 + IN + ReLU, two stride-2 conv3x3
    downsamplings (channels x2 each), `blocks` residual blocks, two upsamplings, reflection-pad
    + conv7x7 + tanh. InstanceNorm without affine parameters, as junyanz.

    Upsampling is nearest resize + reflection-pad + conv3x3 + IN + ReLU instead of
    ConvTranspose2d, whose uneven kernel overlap draws checkerboard artefacts (Odena,
    Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts"; junyanz issue #190).

    residual=True makes it a refiner (SimGAN, Shrivastava et al. 2017): the last conv's
    output is added to the input and clamped to [-1, 1] instead of passed through tanh.
    It starts near the identity, so anatomy and the -1 background are kept from the first
    step and a short training budget goes into appearance; junyanz's plain tanh output
    must first learn to reproduce the whole image.
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, blocks: int = 9, residual: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), _conv(in_channels, channels, 7), nn.InstanceNorm2d(channels), nn.ReLU(),
        ]
        for mult in (1, 2):
            layers += [
                _conv(channels * mult, channels * mult * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(channels * mult * 2),
                nn.ReLU(),
            ]
        layers += [ResnetBlock(channels * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                _conv(channels * mult, channels * mult // 2, 3),
                nn.InstanceNorm2d(channels * mult // 2),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), _conv(channels, in_channels, 7)]
        if not residual:
            layers.append(nn.Tanh())
        self.residual = residual
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"image size {h}x{w} is not divisible by 4 (two stride-2 downsamplings)")
        if self.residual:
            return (images + self.net(images)).clamp(-1.0, 1.0)
        return self.net(images)
