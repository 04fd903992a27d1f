"""Shared test doubles for the training tests."""

import torch
from torch import nn


class FakeLive:
    """Records what the loop logs, in place of dvclive.Live."""

    def __init__(self):
        self.step = 0
        self.metrics: list[tuple[int, str, float]] = []
        self.images: list[str] = []
        self.summary = {}

    def log_metric(self, name, value, plot=True):
        self.metrics.append((self.step, name, value))

    def make_summary(self):
        pass

    def log_image(self, name, image):
        self.images.append(name)


class ChokePointGuard(nn.Module):
    """Wraps a discriminator and fails if it is called outside `discriminate`."""

    inside = False

    def __init__(self, d: nn.Module):
        super().__init__()
        self.d = d
        self.calls = 0

    def forward(self, x):
        assert ChokePointGuard.inside, "discriminator called outside the DiffAugment choke point"
        self.calls += 1
        return self.d(x)


def guarded_discriminate(real_discriminate):
    def wrapper(d, images, policy, *args, **kwargs):
        ChokePointGuard.inside = True
        try:
            return real_discriminate(d, images, policy, *args, **kwargs)
        finally:
            ChokePointGuard.inside = False
    return wrapper


def params_of(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: nn.Module) -> bool:
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, net.parameters()))


def tiny_vgg(seed: int = 0) -> nn.Sequential:
    """The first two VGG19 blocks (indices 0..9, same module types) with 4 and 8 channels.

    Stands in for the 143 M-parameter VGG19 wherever a test is not about VGG itself.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
