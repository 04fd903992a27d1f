"""U-Net segmenter (Ronneberger et al. 2015) with a ResNet encoder, built with segmentation_models_pytorch."""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from src.state_dicts import read_state_dict


def build_unet(
    encoder: str,
    encoder_depth: int,
    decoder_channels: list[int],
    n_classes: int,
    encoder_weights_path: str | None,
) -> tuple[nn.Module, str]:
    """A 1-channel smp U-Net and a description ("<encoder>_imagenet" or "<encoder>_random_init").

    Input (N, 1, H, W) in [-1, 1], H and W divisible by 2**encoder_depth; output logits
    (N, n_classes, H, W). encoder_weights_path: a torchvision-format ImageNet ResNet state
    dict (e.g. resnet18-5c106cde.pth), read from disk because nothing can be downloaded; its
    classifier (fc.*) is dropped and its first conv (64, 3, 7, 7) summed over RGB to
    (64, 1, 7, 7), as smp does for in_channels=1 (a grey image is R = G = B). Every encoder
    weight must be found in the file. None keeps smp's random init (global RNG).
    """
    model = smp.Unet(
        encoder_name=encoder,
        encoder_depth=encoder_depth,
        decoder_channels=list(decoder_channels),
        encoder_weights=None,
        in_channels=1,
        classes=n_classes,
    )
    if encoder_weights_path is None:
        return model, f"{encoder}_random_init"
    if not encoder.startswith("resnet"):
        raise ValueError(f"encoder weights must be a torchvision ResNet state dict; encoder {encoder!r} is not a ResNet")
    state = read_state_dict(encoder_weights_path, f"{encoder} encoder weights")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    if "conv1.weight" not in state or state["conv1.weight"].shape[1] != 3:
        raise ValueError(f"{encoder_weights_path}: expected an RGB ResNet state dict with conv1.weight of shape (64, 3, 7, 7)")
    state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    # nn.Module's loader, not smp's override, which discards the missing/unexpected report.
    result = nn.Module.load_state_dict(model.encoder, state, strict=False)
    # Old torchvision files predate BatchNorm's num_batches_tracked; BN fills it in itself.
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{encoder_weights_path} does not fit encoder {encoder!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
        )
    return model, f"{encoder}_imagenet"
