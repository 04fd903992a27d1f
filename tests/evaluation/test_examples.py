"""The sim-to-real example grid's |translated - input| columns (src/evaluation/examples.py)."""

import numpy as np
import torch

from src.evaluation.examples import change_map, sim2real_grid
from src.training.samples import difference_map


def _images(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def test_change_is_zero_for_an_identity_translator():
    sim, classical = _images(seed=0), _images(seed=1)
    black = change_map(sim, sim, vmax=0.5)
    assert black.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(black, np.broadcast_to(black[0, 0, 0], black.shape))  # one colour: zero
    assert tuple(black[0, 0, 0]) == tuple(change_map(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), 1.0)[0, 0, 0])
    scaled, peak = difference_map(sim, sim)
    assert peak == 0 and not scaled.any()

    labels = torch.zeros(3, 16, 16, dtype=torch.long)
    renderings = {"raw_sim": sim, "classical": classical, "translated_sim": sim.clone(),
                  "translated_classical": classical.clone()}
    _, vmax = sim2real_grid(renderings, _images(seed=2), labels, labels, n=2)
    assert vmax == 1e-3  # nothing changed: the floor of the colour scale


def test_change_shows_where_and_how_much_the_translator_moved_pixels():
    sim = _images()
    moved = sim.clone()
    moved[:, :, 4:8, 4:8] += 0.4
    shown = change_map(moved, sim, vmax=0.4).astype(int)
    inside, outside = shown[:, 4:8, 4:8], shown[:, 9:, 9:]
    assert inside.sum(-1).min() > outside.sum(-1).max()
    renderings = {"raw_sim": sim, "classical": sim, "translated_sim": moved, "translated_classical": sim}
    labels = torch.zeros(3, 16, 16, dtype=torch.long)
    _, vmax = sim2real_grid(renderings, sim, labels, labels, n=3)
    assert abs(vmax - 0.4) < 1e-5  # one shared scale: the largest change of either translator
