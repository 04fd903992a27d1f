"""D's val scoring during the SR GAN phase (src/training/d_monitor.py): the crop grid, AUC and accuracy, intervals,
and that scoring leaves both networks as it found them."""

import itertools

import numpy as np
import pytest
import torch

from src.data.degrade import degrade, naive_upsample
from src.models.discriminators import PatchDiscriminator
from src.models.highpass import HighPassDiscriminator
from src.models.srresnet import SRResNet
from src.training.d_monitor import (auc, balanced_accuracy, discriminator_scores, generate, separation,
                                    val_crop_grid)
from src.training.gan_utils import decision_boundary


def val_slices(n=3, size=64, scale=4):
    hr = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lr = degrade(hr, scale, "kspace")
    return {"lr": lr, "naive": naive_upsample(lr, scale, "kspace"), "hr": hr}


def test_the_grid_holds_aligned_lr_and_hr_windows_of_every_slice():
    val = val_slices()
    crops = val_crop_grid(val, scale=4, hr_crop=32, stride_lr=4)   # LR 16 px, windows at 0 and 4 and 8 per axis
    assert crops.windows == 9 and len(crops.lr) == 27
    assert crops.lr.shape[1:] == (1, 8, 8) and crops.hr.shape[1:] == crops.naive.shape[1:] == (1, 32, 32)
    assert crops.owner.tolist() == [0, 1, 2] * 9
    for k, (y, x) in enumerate(itertools.product((0, 4, 8), repeat=2)):
        for s in range(3):
            i = 3 * k + s
            assert torch.equal(crops.lr[i, 0], val["lr"][s, 0, y:y + 8, x:x + 8])
            assert torch.equal(crops.hr[i, 0], val["hr"][s, 0, 4 * y:4 * y + 32, 4 * x:4 * x + 32])
            assert torch.equal(crops.naive[i, 0], val["naive"][s, 0, 4 * y:4 * y + 32, 4 * x:4 * x + 32])
    with pytest.raises(ValueError, match="larger than the val slices"):
        val_crop_grid(val, scale=4, hr_crop=128)


def test_auc_is_the_share_of_real_fake_pairs_ordered_right_with_ties_halved():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)   # rounding makes ties
    pairs = real[:, None] - fake[None, :]
    assert auc(real, fake) == pytest.approx(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size)
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert auc(np.zeros(5), np.zeros(7)) == 0.5


def test_balanced_accuracy_uses_d_s_own_boundary():
    real, fake = np.array([0.3, 0.7, -0.1]), np.array([0.2, 0.6])
    assert balanced_accuracy(real, fake, decision_boundary("nonsaturating")) == pytest.approx(0.5 * (2 / 3 + 0))
    assert balanced_accuracy(real, fake, decision_boundary("lsgan")) == pytest.approx(0.5 * (1 / 3 + 1 / 2))
    # Relativistic: reals above the fakes' mean (0.4): 0.7; fakes at or below the reals' mean (0.3): 0.2.
    assert balanced_accuracy(real, fake, decision_boundary("relativistic")) == pytest.approx(0.5 * (1 / 3 + 1 / 2))
    assert balanced_accuracy(real + 5, fake + 5, decision_boundary("relativistic")) == pytest.approx(0.5 * (1 / 3 + 1 / 2))


def test_intervals_resample_whole_slices_and_hold_the_point_value():
    rng = np.random.default_rng(1)
    owner = np.tile(np.arange(6), 4)
    real, fake = rng.normal(1, 1, 24), rng.normal(0, 1, 24)
    result = separation(real, fake, owner, 0.0, seed=0, n_resamples=200)
    for name, value in (("auc", auc(real, fake)), ("accuracy", balanced_accuracy(real, fake, 0.0))):
        low, high = result[name]["ci95"]
        assert result[name]["value"] == pytest.approx(value, abs=1e-4)
        assert low <= result[name]["value"] <= high and low < high
    assert separation(real, fake, owner, 0.0, seed=0, n_resamples=200) == result   # seeded


def test_scoring_changes_neither_network_and_restores_their_modes():
    torch.manual_seed(0)
    g = SRResNet(4, "kspace", channels=4, blocks=1, data_consistency=True)
    d = HighPassDiscriminator(PatchDiscriminator(1, 4, 2, spectral_norm=True), 1.0)
    crops = val_crop_grid(val_slices(), scale=4, hr_crop=32, stride_lr=8)
    g.train()
    d.train()
    before = {k: v.clone() for k, v in d.state_dict().items()}   # spectral norm's u and v included
    real, fake = discriminator_scores(d, g, crops)
    assert d.training and g.training
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
    assert real.shape == fake.shape == (len(crops.hr),)
    # Scoring again gives the same numbers: nothing in D moved, and no random draw is involved.
    again = discriminator_scores(d, g, crops)
    assert np.array_equal(real, again[0]) and np.array_equal(fake, again[1])
    with torch.no_grad():
        expected = g(crops.lr, crops.naive)
    torch.testing.assert_close(generate(g, crops), expected)
