"""Semantic-consistency loss of a frozen segmenter on translated images (CyCADA, Hoffman et al. 2018).

L_sem = CE(f(G(x)), y): a segmenter f pre-trained on the source domain and frozen judges
whether the translation kept the anatomy; y is the source ground truth where labels exist
(sim) or f's own pseudo-labels argmax f(x) on the untranslated image (real).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_frozen(segmenter: nn.Module) -> None:
    # Train mode would update BatchNorm statistics with translated images; trainable
    # parameters would silently collect the generator's gradients.
    if segmenter.training:
        raise ValueError("the segmenter must be in eval mode (call .eval())")
    if any(p.requires_grad for p in segmenter.parameters()):
        raise ValueError("the segmenter must be frozen (call .requires_grad_(False))")


def semantic_ce(segmenter: nn.Module, images: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
    """Mean pixel cross-entropy of segmenter(images) against target_labels (CyCADA's L_sem).

    segmenter: frozen (eval mode, no trainable parameters), maps (N, 1, H, W) to logits
    (N, K, H, W). images: (N, 1, H, W) in [-1, 1], typically G's output (gradient flows to
    them). target_labels: (N, H, W) integer class indices in [0, K). Returns a 0-dim tensor.
    """
    _check_frozen(segmenter)
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(images.shape)}")
    if target_labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels {tuple(target_labels.shape)} do not match images {tuple(images.shape)}; expected (N, H, W)")
    logits = segmenter(images)
    # At least float32: a bf16 log-softmax is too coarse for a loss term.
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), target_labels.long())


@torch.no_grad()
def pseudo_labels(segmenter: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """argmax_k segmenter(images): (N, 1, H, W) in [-1, 1] -> (N, H, W) int64 class indices."""
    _check_frozen(segmenter)
    return segmenter(images).argmax(dim=1)
