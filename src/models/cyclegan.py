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


class ReturningClamp(torch.autograd.Function):
    """clamp(x, -1, 1) whose gradient passes where x is inside [-1, 1] or where a descent step
    moves it back inside; it is zero only for steps that would push x further out.

    A hard clamp's zero gradient strands every pixel pushed past a bound: T2 CSF starts at
    exactly +1 and must fall to T1's darkest tissue, while a shared upward shift lifts it over +1.
    A plain straight-through clamp lets the hidden value run away (measured: pre-clamp tissue
    means of -6 and +2 after 300-800 steps, a near-binary image after the clamp).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # Descent moves x by -lr * grad: above +1 only a positive grad brings it back, below -1 a negative one.
        passes = ((x >= -1.0) & (x <= 1.0)) | ((x > 1.0) & (grad > 0)) | ((x < -1.0) & (grad < 0))
        return grad * passes


class IntensityBranch(nn.Module):
    """A learned pointwise intensity map h(x) - h(-1): 1x1 convs, (N, 1, H, W) -> (N, 1, H, W).

    Sits beside the refiner's convolutional residual. Across contrasts (T2 -> T1) the tissues'
    order flips: CSF goes from brightest to darkest, WM from darkest to brightest. That is a
    non-monotone function of the input intensity alone, which a pixel-wise MLP states in a few
    weights, while the instance-normalised conv path sees intensities only relative to each
    image's statistics. The last layer starts at zero, so the branch starts at 0 and the refiner
    at its identity; subtracting h(-1) keeps the background (exactly -1) where it is.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, hidden, 1), nn.SiLU(),
                                 nn.Conv2d(hidden, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        background = torch.full_like(images[:1, :1, :1, :1], -1.0)
        return self.net(images) - self.net(background)


class ResnetGenerator(nn.Module):
    """(N, C, H, W) in [-1, 1] -> (N, C, H, W) in (-1, 1) (tanh); H and W divisible by 4.

    junyanz `ResnetGenerator`: reflection-pad + conv7x7 + IN + ReLU, two stride-2 conv3x3
    downsamplings (channels x2 each), `blocks` residual blocks, two upsamplings, reflection-pad
    + conv7x7 + tanh. InstanceNorm without affine parameters, as junyanz.

    Upsampling is nearest resize + reflection-pad + conv3x3 + IN + ReLU instead of
    ConvTranspose2d, whose uneven kernel overlap draws checkerboard artefacts (Odena,
    Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts"; junyanz issue #190).

    residual=True makes it a refiner (SimGAN, Shrivastava et al. 2017): the last conv's
    output is added to the input and clamped to [-1, 1] (`ReturningClamp`: a pixel past a
    bound can still be pulled back) instead of passed through tanh.
    It starts near the identity, so anatomy and the -1 background are kept from the first
    step and a short training budget goes into appearance; junyanz's plain tanh output
    must first learn to reproduce the whole image.

    intensity_hidden > 0 (refiner only, one channel) adds an `IntensityBranch` of that width:
    output = clamp(x + G(x) + h(x) - h(-1), -1, 1).

    zero_start (refiner only): the conv path's last layer starts at zero, so the refiner starts at
    exactly its input. With junyanz's N(0, 0.02) init that layer sums 49 x channels ReLU outputs and
    adds noise of std ~0.3-0.4 to every pixel at step 0 (measured on the demo at 16 channels).
    `conv_path_enabled` (an attribute, not a weight) switches the conv path off: the refiner is then
    its intensity branch alone, a pointwise map that cannot move anatomy (train.cyclegan.pointwise_steps).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, blocks: int = 9, residual: bool = False,
                 intensity_hidden: int = 0, zero_start: bool = False) -> None:
        super().__init__()
        if intensity_hidden and not (residual and in_channels == 1):
            raise ValueError("an intensity branch needs the one-channel refiner (residual=True, in_channels=1)")
        if zero_start and not residual:
            raise ValueError("zero_start needs the refiner (residual=True): a tanh generator at zero outputs 0")
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
        if zero_start:
            nn.init.zeros_(self.net[-1].weight)
        self.intensity = IntensityBranch(intensity_hidden) if intensity_hidden else None
        self.conv_path_enabled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"image size {h}x{w} is not divisible by 4 (two stride-2 downsamplings)")
        if not self.conv_path_enabled and (not self.residual or self.intensity is None):
            raise RuntimeError("the conv path can only be switched off in a refiner with an intensity branch")
        if self.residual:
            change = self.net(images) if self.conv_path_enabled else torch.zeros_like(images)
            if self.intensity is not None:
                change = change + self.intensity(images)
            return ReturningClamp.apply(images + change)
        return self.net(images)
