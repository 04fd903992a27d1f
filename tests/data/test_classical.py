"""The classical sim-to-real baseline (src/data/classical.py): blur + foreground histogram matching."""

import numpy as np

from src.data.classical import QuantileMap, classical_rendering, fit_classical, partial_volume_blur


def _stack(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r = np.hypot(yy - size / 2 - rng.integers(-2, 3), xx - size / 2) / (size / 2)
        labels[i] = np.select([r < 0.3, r < 0.6, r < 0.8], [3, 2, 1], 0)
    sim = np.select([labels == 3, labels == 2, labels == 1], [1.0, 0.6, -0.2], -1.0).astype(np.float32)[:, None]
    return sim, labels


def test_matched_foreground_takes_the_reference_distribution():
    sim, labels = _stack()
    rng = np.random.default_rng(1)
    real = np.full_like(sim, -1.0)
    real[labels[:, None] != 0] = rng.normal(0.2, 0.3, int((labels != 0).sum())).clip(-0.99, 1)
    matching = fit_classical(sim, labels, real, labels, blur_sigma=0.7)
    out = classical_rendering(sim, labels, matching, blur_sigma=0.7)
    fg_out, fg_real = out[labels[:, None] != 0], real[labels[:, None] != 0]
    # Quantiles of the matched foreground follow the reference's, up to the plateaus' mid-rank.
    assert abs(np.median(fg_out) - np.median(fg_real)) < 0.1
    assert abs(fg_out.std() - fg_real.std()) < 0.1
    # Monotone: the tissue order of the source survives.
    means = [out[:, 0][labels == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_labels_untouched_and_background_exactly_minus_one():
    sim, labels = _stack()
    before = labels.copy()
    matching = fit_classical(sim, labels, sim * 0.5, labels, blur_sigma=1.0)
    out = classical_rendering(sim, labels, matching, blur_sigma=1.0)
    np.testing.assert_array_equal(labels, before)
    assert np.all(out[:, 0][labels == 0] == -1.0)
    assert out.min() >= -1 and out.max() <= 1


def test_blur_keeps_a_constant_background_and_zero_sigma_is_a_copy():
    sim, _ = _stack()
    np.testing.assert_array_equal(partial_volume_blur(sim, 0.0), sim)
    flat = np.full((1, 1, 16, 16), -1.0, np.float32)
    np.testing.assert_allclose(partial_volume_blur(flat, 1.5), flat, atol=1e-6)  # borders read -1, not 0
    blurred = partial_volume_blur(sim, 1.0)
    assert blurred[0, 0].std() < sim[0, 0].std()  # edges soften


def test_quantile_map_sends_a_plateau_to_its_mid_rank():
    source = np.array([0.0] * 50 + [1.0] * 50)
    reference = np.linspace(0, 1, 1001)
    mapped = QuantileMap.fit(source, reference)(np.array([0.0, 1.0]))
    np.testing.assert_allclose(mapped, [0.25, 0.75], atol=2e-3)
