"""VGG19 perceptual (feature-space L1) loss for 1-channel images (Johnson et al. 2016; Ledig et al. 2017).

The feature network is a constructor argument: stages build it with `build_vgg19_features`
from a local ImageNet weight file, or, when none is available (no downloads here), from a
fixed-seed random initialisation. Random VGG features are only a texture-statistics proxy;
the description string returned by the builder says which one a run used.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from src.state_dicts import not_loadable, read_state_dict

# Index in torchvision `vgg19().features` of every conv and ReLU; the pools (4, 9, 18, 27, 36) are unnamed.
VGG19_LAYERS: dict[str, int] = {
    "conv1_1": 0, "relu1_1": 1, "conv1_2": 2, "relu1_2": 3,
    "conv2_1": 5, "relu2_1": 6, "conv2_2": 7, "relu2_2": 8,
    "conv3_1": 10, "relu3_1": 11, "conv3_2": 12, "relu3_2": 13,
    "conv3_3": 14, "relu3_3": 15, "conv3_4": 16, "relu3_4": 17,
    "conv4_1": 19, "relu4_1": 20, "conv4_2": 21, "relu4_2": 22,
    "conv4_3": 23, "relu4_3": 24, "conv4_4": 25, "relu4_4": 26,
    "conv5_1": 28, "relu5_1": 29, "conv5_2": 30, "relu5_2": 31,
    "conv5_3": 32, "relu5_3": 33, "conv5_4": 34, "relu5_4": 35,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0


def build_vgg19_features(weights_path: str | None) -> tuple[nn.Sequential, str]:
    """torchvision VGG19 `.features` and a description: "vgg19_imagenet" or "vgg19_random_init".

    weights_path: a full torchvision vgg19 state dict (e.g. vgg19-dcbb9e9d.pth), loaded
    strictly. None keeps a random initialisation seeded with RANDOM_INIT_SEED inside
    `fork_rng`, so it is the same network in every run and the caller's RNG stream is untouched.
    """
    if weights_path is not None:
        vgg = torchvision.models.vgg19(weights=None)
        state = read_state_dict(weights_path, "VGG19 weights")
        try:
            vgg.load_state_dict(state)
        except RuntimeError as err:
            raise not_loadable(weights_path, "VGG19 weights", err) from None
        return vgg.features, "vgg19_imagenet"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        vgg = torchvision.models.vgg19(weights=None)
    return vgg.features, "vgg19_random_init"


class VGGPerceptualLoss(nn.Module):
    """sum_l w_l * mean |phi_l(pred) - phi_l(target)| over named VGG19 layers (L1 in feature space).

    vgg_features: torchvision `vgg19().features` (or a prefix of it). It is copied, truncated
    after the deepest requested layer, its ReLUs made out-of-place (an in-place ReLU would
    overwrite a captured pre-activation "conv" feature), frozen and kept in eval mode; the
    caller's module is not modified. layers: names from VGG19_LAYERS; conv names are
    pre-activation features (ESRGAN's choice), relu names post-activation (SRGAN's).
    weights: one per layer, default all 1.
    """

    def __init__(self, vgg_features: nn.Sequential, layers: list[str], weights: list[float] | None = None) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers must name at least one VGG19 layer")
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; valid names: {list(VGG19_LAYERS)}")
        if weights is None:
            weights = [1.0] * len(layers)
        if len(weights) != len(layers):
            raise ValueError(f"got {len(weights)} weights for {len(layers)} layers")
        deepest = max(VGG19_LAYERS[name] for name in layers)
        if deepest >= len(vgg_features):
            raise ValueError(f"layer index {deepest} is beyond the given network ({len(vgg_features)} modules)")
        self.layers = list(layers)
        self.layer_weights = list(weights)
        self.indices = [VGG19_LAYERS[name] for name in layers]
        modules = [
            nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else copy.deepcopy(m)
            for m in list(vgg_features)[: deepest + 1]
        ]
        self.features = nn.Sequential(*modules)
        self.features.requires_grad_(False)
        self.features.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Stay in eval mode: the feature network is a fixed measuring instrument."""
        super().train(mode)
        self.features.eval()
        return self

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1 or 3, H, W) in [-1, 1] -> (N, 3, H, W) ImageNet-normalised; a new tensor."""
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        unit = (images + 1.0) / 2.0
        return (unit - self.mean.to(unit.dtype)) / self.std.to(unit.dtype)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        wanted = set(self.indices)
        captured: dict[int, torch.Tensor] = {}
        x = self._normalise(images)
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                captured[index] = x
        return [captured[index] for index in self.indices]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (N, 1 or 3, H, W) in [-1, 1], same shape -> 0-dim loss; gradient flows to pred only."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if pred.ndim != 4 or pred.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1 or 3, H, W) images, got {tuple(pred.shape)}")
        pred_features = self._features(pred)
        with torch.no_grad():
            target_features = self._features(target)
        return feature_l1(pred_features, target_features, self.layer_weights)


def feature_l1(pred_features: list[torch.Tensor], target_features: list[torch.Tensor],
               weights: list[float]) -> torch.Tensor:
    """sum_k weights[k] * mean |pred_features[k] - target_features[k]|: the perceptual distance of VGGPerceptualLoss
    and of src/models/hr_features.py's FeaturePerceptualLoss."""
    loss = 0.0
    for weight, p, t in zip(weights, pred_features, target_features, strict=True):
        # Reduce in at least float32: a bf16 mean over millions of features loses digits.
        reduce_dtype = torch.promote_types(p.dtype, torch.float32)
        loss = loss + weight * F.l1_loss(p.to(reduce_dtype), t.to(reduce_dtype))
    return loss
