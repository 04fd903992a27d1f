"""train_segmenter's segmenter.randomize option: which images the semantic-consistency U-Net is trained on."""

import copy

import torch
import yaml

from src.config import params_from_dict
from src.train_segmenter import training_render

RAW = yaml.safe_load(open("params.yaml"))


def segmenter_cfg(randomize: bool, t1_ordering: bool = False):
    raw = copy.deepcopy(RAW)
    raw["segmenter"]["randomize"] = randomize
    raw["segmenter"]["randomization"]["t1_ordering"] = t1_ordering
    return params_from_dict(raw).segmenter


def labels(n: int = 64) -> torch.Tensor:
    """Concentric label maps: background 0 outside, CSF 1, GM 2, WM 3 inside."""
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    radius = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt()
    one = torch.zeros(32, 32, dtype=torch.long)
    one[radius < 14] = 1
    one[radius < 11] = 2
    one[radius < 7] = 3
    return one.expand(n, 32, 32).clone()


def tissue_means(images: torch.Tensor, lab: torch.Tensor, k: int) -> torch.Tensor:
    return torch.stack([images[i, 0][lab[i] == k].mean() for i in range(len(images))])


def test_no_randomize_trains_on_the_sim_images():
    assert training_render(segmenter_cfg(False), 3) is None


def test_randomize_draws_images_of_any_tissue_order():
    render = training_render(segmenter_cfg(True), 3)
    lab = labels()
    images = render(lab, torch.Generator().manual_seed(0))
    assert images.shape == (64, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(images[:, 0][lab == 0], torch.full_like(images[:, 0][lab == 0], -1.0))
    csf_above_wm = (tissue_means(images, lab, 1) > tissue_means(images, lab, 3)).float().mean()
    # Without a T1 prior, T2-like (CSF brightest) and T1-like orders are both drawn, often.
    assert 0.2 < csf_above_wm < 0.8
    again = render(lab, torch.Generator().manual_seed(0))
    assert torch.equal(images, again)  # reproducible from the generator's seed
    assert not torch.equal(images, render(lab, torch.Generator().manual_seed(1)))


def test_t1_ordering_in_the_segmenter_ranges_is_honoured():
    render = training_render(segmenter_cfg(True, t1_ordering=True), 3)
    lab = labels()
    images = render(lab, torch.Generator().manual_seed(0))
    # The bias field and blur can move a tissue's mean a little, never reverse the drawn order on average.
    assert (tissue_means(images, lab, 1) < tissue_means(images, lab, 3)).float().mean() > 0.9
