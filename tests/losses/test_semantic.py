"""Tests for the semantic-consistency loss with a hand-built intensity-threshold segmenter."""

import pytest
import torch
from torch import nn

from src.losses.semantic import pseudo_labels, semantic_ce


def _threshold_segmenter():
    """1x1 conv: class 1 (foreground) where intensity > 0, class 0 elsewhere; frozen, eval."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-5.0, 5.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
    return conv.requires_grad_(False).eval()


def _images(seed=0, shape=(3, 1, 8, 8)):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


def test_pseudo_labels_are_the_threshold():
    images = _images()
    labels = pseudo_labels(_threshold_segmenter(), images)
    assert labels.shape == (3, 8, 8) and labels.dtype == torch.int64
    assert torch.equal(labels, (images[:, 0] > 0).long())


def test_ce_lower_for_own_predictions_than_shuffled_labels():
    segmenter, images = _threshold_segmenter(), _images()
    own = pseudo_labels(segmenter, images)
    shuffled = own.flatten()[torch.randperm(own.numel(), generator=torch.Generator().manual_seed(1))].view_as(own)
    flipped = 1 - own
    consistent = semantic_ce(segmenter, images, own)
    assert consistent < semantic_ce(segmenter, images, shuffled) < semantic_ce(segmenter, images, flipped)


def test_ce_known_value():
    segmenter = _threshold_segmenter()
    images = torch.full((1, 1, 2, 2), 0.2)
    # logits (-1, 1): CE for class 1 is log(1 + e^-2), for class 0 log(1 + e^2).
    value = semantic_ce(segmenter, images, torch.tensor([[[1, 1], [0, 0]]]))
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(2.0)))) / 2
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_flows_to_images_not_segmenter():
    segmenter = _threshold_segmenter()
    images = _images().requires_grad_(True)
    labels = 1 - pseudo_labels(segmenter, images.detach())
    semantic_ce(segmenter, images, labels).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in segmenter.parameters())
    # Descending the gradient moves the images towards the target labels.
    stepped = images.detach() - 0.5 * images.grad.sign()
    assert semantic_ce(segmenter, stepped, labels) < semantic_ce(segmenter, images.detach(), labels)


def test_requires_frozen_eval_segmenter_and_matching_labels():
    images = _images()
    trainable = _threshold_segmenter().requires_grad_(True)
    with pytest.raises(ValueError, match="frozen"):
        semantic_ce(trainable, images, torch.zeros(3, 8, 8, dtype=torch.long))
    training = _threshold_segmenter().train()
    with pytest.raises(ValueError, match="eval"):
        pseudo_labels(training, images)
    with pytest.raises(ValueError, match="labels"):
        semantic_ce(_threshold_segmenter(), images, torch.zeros(3, 1, 8, 8, dtype=torch.long))
