"""SynthSeg-style domain randomisation (src/augment/randomization.py)."""

import torch

from src.augment.randomization import randomized_images
from src.config import RandomizationConfig

RANGES = RandomizationConfig(tissue_mean=(0.0, 1.0), tissue_std=(0.0, 0.1), t1_ordering=True, bias_field_std=0.3,
                             bias_field_grid=4, blur_sigma=(0.0, 1.0), gamma_log_std=0.3, noise_std=(0.0, 0.05))


def _labels(b=6, size=32):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    one = torch.where(r < 0.3, 3, torch.where(r < 0.6, 2, torch.where(r < 0.8, 1, 0)))
    return one.expand(b, size, size).clone()


def test_labels_never_move_and_background_is_minus_one():
    labels = _labels()
    before = labels.clone()
    images = randomized_images(labels, 3, RANGES, torch.Generator().manual_seed(0))
    assert torch.equal(labels, before)
    assert images.shape == (6, 1, 32, 32)
    assert torch.all(images[:, 0][labels == 0] == -1.0)
    assert images.min() >= -1 and images.max() <= 1


def test_draws_differ_across_batches_and_repeat_from_a_seed():
    labels = _labels()
    g = torch.Generator().manual_seed(3)
    first, second = randomized_images(labels, 3, RANGES, g), randomized_images(labels, 3, RANGES, g)
    assert not torch.allclose(first, second)
    again = randomized_images(labels, 3, RANGES, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    # Within a batch, images of the same label map differ too (per-image draws).
    assert not torch.allclose(first[0], first[1])


def test_t1_ordering_keeps_csf_below_gm_below_wm():
    labels = _labels(b=32)
    ranges = RandomizationConfig(tissue_mean=(0.0, 1.0), tissue_std=(0.0, 0.0), t1_ordering=True, bias_field_std=0.0,
                                 bias_field_grid=4, blur_sigma=(0.0, 0.0), gamma_log_std=0.0, noise_std=(0.0, 0.0))
    images = randomized_images(labels, 3, ranges, torch.Generator().manual_seed(0))[:, 0]
    for image, lab in zip(images, labels):
        csf, gm, wm = (image[lab == c].mean() for c in (1, 2, 3))
        assert csf <= gm <= wm
