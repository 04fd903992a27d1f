"""Feature extractors for distribution metrics: the FID Inception-v3 and a pooled segmentation encoder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

from src.state_dicts import not_loadable

FID_FEATURE_DIM = 2048


def build_fid_inception(weights_path: str | Path) -> nn.Module:
    """The FID Inception-v3 of pytorch-fid (Heusel et al. 2017), with its pool3 (2048-d) output.

    weights_path: local copy of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
        (the TF 2015-12-05 graph port). Nothing is ever downloaded.
    The weights go through pytorch-fid's own loading code, so the architecture patches and
    key names are exactly those of published pytorch-fid numbers: fid_inception_v3() calls
    torch.hub's load_state_dict_from_url(FID_WEIGHTS_URL), which reads
    <hub_dir>/checkpoints/<URL basename> when that file exists. We point a temporary hub dir at
    the file for the duration of construction and restore the previous hub dir afterwards.
    Returns pytorch_fid.inception.InceptionV3 in eval mode: input (N, 3, H, W) in [0, 1],
        resized to 299x299 (bilinear, no antialias) and rescaled to [-1, 1] inside; output a
        one-element list holding (N, 2048, 1, 1).
    """
    resolved = Path(weights_path).expanduser().resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"FID Inception weights not found: {weights_path}")
    previous_hub_dir = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="fid_hub_") as hub_dir:
        checkpoints = Path(hub_dir) / "checkpoints"
        checkpoints.mkdir()
        cached = checkpoints / os.path.basename(urlparse(FID_WEIGHTS_URL).path)
        try:
            os.symlink(resolved, cached)
        except OSError:  # filesystems without symlinks
            shutil.copyfile(resolved, cached)
        torch.hub.set_dir(hub_dir)
        try:
            network = InceptionV3(
                [InceptionV3.BLOCK_INDEX_BY_DIM[FID_FEATURE_DIM]],
                resize_input=True,
                normalize_input=True,
                use_fid_inception=True,
            )
        except Exception as err:  # pytorch-fid's own loader: torch.load and load_state_dict errors of every kind
            raise not_loadable(weights_path, "FID Inception weights", err) from None
        finally:
            torch.hub.set_dir(previous_hub_dir)
    return network.eval()


class InceptionFeatures(nn.Module):
    """Pool3 features of the FID Inception for single- or three-channel images in [-1, 1].

    inception: the network from build_fid_inception (or any module with the same contract:
        (N, 3, H, W) in [0, 1] -> [(N, 2048, 1, 1)]), or the path of the pytorch-fid weights
        file, which is then built with build_fid_inception.
    forward: (N, 1 or 3, H, W) in [-1, 1] -> (N, 2048). Grayscale is repeated to 3 channels
        (as clean-fid/mmagic do for grayscale). Inputs are clamped to [-1, 1], as saving them to
        an 8-bit PNG would, because pytorch-fid's statistics assume images in range.
    """

    name = "inception_fid"

    def __init__(self, inception: nn.Module | str | Path):
        super().__init__()
        if not isinstance(inception, nn.Module):
            inception = build_fid_inception(inception)
        self.inception = inception.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        # A fixed metric network: BatchNorm must keep its running statistics whatever the caller does.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1)
        # pytorch-fid expects [0, 1] and maps to [-1, 1] itself (normalize_input=True).
        images = (images.clamp(-1.0, 1.0) + 1.0) / 2.0
        return self.inception(images)[0].flatten(start_dim=1)


class EncoderFeatures(nn.Module):
    """Globally average-pooled deepest feature map of a frozen encoder, e.g. the segmenter's.

    encoder: module mapping (N, C, H, W) images to either a list/tuple of feature maps
        (segmentation_models_pytorch encoders; the LAST, deepest one is used) or a single tensor
        (N, D, h, w). It is frozen in place (eval mode, requires_grad False).
    name: label for reports, e.g. "segmenter_encoder"; such features give a Frechet distance or KID
        that is not comparable to published FID.
    forward: images in whatever range the encoder was trained on (the model range [-1, 1] in this
        project) -> (N, D).
    """

    def __init__(self, encoder: nn.Module, name: str):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.name = name

    def train(self, mode: bool = True) -> EncoderFeatures:
        # A fixed metric network: BatchNorm must keep its running statistics whatever the caller does.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        if isinstance(features, (list, tuple)):
            features = features[-1]
        if features.ndim < 2:
            raise ValueError(f"encoder returned features of shape {tuple(features.shape)}, expected (N, D, ...)")
        if features.ndim > 2:
            features = features.flatten(start_dim=2).mean(dim=2)
        return features


def extract_features(
    extractor: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """Run `extractor` over `images` in batches, without gradients.

    extractor: module already on `device`, mapping (B, C, H, W) -> (B, D).
    images: (N, C, H, W) on any device, in the range the extractor expects ([-1, 1] for ours).
    Returns (N, D) float64 on CPU, ready for frechet_distance / kernel_distance.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of images (N, C, H, W), got {tuple(images.shape)}")
    features = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            features.append(extractor(batch).to("cpu", torch.float64))
    return torch.cat(features)
