"""The spin-echo MR simulator (src/data/mr_simulator.py)."""

import dataclasses

import numpy as np
import pytest
from datatest_helpers import REPO

from src.config import load_params
from src.data.labels import CSF, GM, WM
from src.data.mr_simulator import (elastic_deform_labels, signal_intensities, simulate, spin_echo_signal,
                                   tissue_parameters)

SIM = load_params(REPO / "params.yaml").data.sim


T1_EXPERIMENT = dict(tr_ms=500.0, te_ms=15.0)  # README: dvc exp run -S data.sim.tr_ms=500 -S data.sim.te_ms=15


@pytest.mark.parametrize("field_strength", [1.5, 3.0])
def test_default_is_t2_weighted_the_reverse_of_the_real_t1_order(field_strength):
    # The cross-contrast demo: labelled T2-weighted sims, T1 real scans (WM > GM > CSF).
    s = signal_intensities(field_strength, SIM.tr_ms, SIM.te_ms)
    assert s[CSF] > s[GM] > s[WM] > s[0] == 0.0
    t1 = signal_intensities(field_strength, **T1_EXPERIMENT)
    assert t1[WM] > t1[GM] > t1[CSF] > t1[0] == 0.0


def test_default_t2_intensities_by_hand():
    # S = PD (1 - e^(-TR/T1)) e^(-TE/T2), BrainWeb 1.5 T, normalised so that CSF (the brightest, above the 99.5th
    # foreground percentile on a slice with enough CSF) is +1 and zero signal -1: the CSF +1.00, GM -0.12,
    # WM -0.37.
    assert (SIM.field_strength, SIM.tr_ms, SIM.te_ms) == (1.5, 4000.0, 100.0)
    signal = {c: pd * (1 - np.exp(-4000 / t1)) * np.exp(-100 / t2)
              for c, (t1, t2, pd) in {CSF: (2569, 329, 1.0), GM: (833, 83, 0.86), WM: (500, 70, 0.77)}.items()}
    labels = _labels(1, 64)
    images = simulate(labels, SIM, np.random.default_rng(0), [0.5, 99.5])[0, 0]
    for c in (CSF, GM, WM):
        assert images[labels[0] == c] == pytest.approx(-1 + 2 * signal[c] / signal[CSF], abs=1e-6)
    assert [round(float(images[labels[0] == c][0]), 2) for c in (CSF, GM, WM)] == [1.0, -0.12, -0.37]


def test_signal_equation_by_hand():
    # BrainWeb WM at 1.5 T, TR 500, TE 15: 0.77 (1 - e^-1) e^(-15/70)
    assert spin_echo_signal(0.77, 500, 70, 500, 15) == pytest.approx(0.77 * (1 - np.exp(-1)) * np.exp(-15 / 70))
    assert tissue_parameters(1.5)[WM] == {"name": "wm", "t1_ms": 500.0, "t2_ms": 70.0, "pd": 0.77}
    assert tissue_parameters(3.0)[GM]["t1_ms"] == 1331.0
    # T2-weighting (long TR, long TE) reverses the order: CSF brightest.
    t2w = signal_intensities(1.5, 4000, 100)
    assert t2w[CSF] > t2w[GM] > t2w[WM]


def _labels(n=3, size=32):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    one = np.select([r < 0.3, r < 0.6, r < 0.8], [WM, GM, CSF], 0).astype(np.uint8)
    return np.repeat(one[None], n, axis=0)


def test_simulate_range_background_and_determinism():
    labels = _labels()
    images = simulate(labels, SIM, np.random.default_rng(0), [0.5, 99.5])
    assert images.shape == (3, 1, 32, 32) and images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1
    assert np.all(images[:, 0][labels == 0] == -1.0)
    means = {c: images[:, 0][labels == c].mean() for c in (CSF, GM, WM)}
    assert means[CSF] > means[GM] > means[WM]  # T2-weighted by default
    again = simulate(labels, SIM, np.random.default_rng(0), [0.5, 99.5])
    np.testing.assert_array_equal(images, again)


def test_noise_free_simulation_is_piecewise_constant():
    labels = _labels(1)
    images = simulate(labels, dataclasses.replace(SIM, noise_std=0.0), np.random.default_rng(0), [0.0, 100.0])
    for c in (CSF, GM, WM):
        assert np.ptp(images[0, 0][labels[0] == c]) == 0
    s = signal_intensities(SIM.field_strength, SIM.tr_ms, SIM.te_ms)
    brightest = max((CSF, GM, WM), key=s.get)
    assert images[0, 0][labels[0] == brightest][0] == 1.0
    # Zero signal is the background value: the darkest tissue sits at its signal relative to the brightest, not on -1.
    darkest = min((CSF, GM, WM), key=s.get)
    assert images[0, 0][labels[0] == darkest][0] == pytest.approx(-1 + 2 * s[darkest] / s[brightest], abs=1e-6)
    assert images[0, 0][labels[0] == darkest][0] > -1


@pytest.mark.parametrize("field_strength", [1.5, 3.0])
@pytest.mark.parametrize("tr_ms, te_ms", [(tr, te) for tr in (20.0, 100.0, 500.0, 2000.0, 10000.0)
                                          for te in (2.0, 15.0, 80.0, 300.0) if te < tr])  # validation: TE < TR
def test_no_tissue_lands_on_the_background_value(field_strength, tr_ms, te_ms):
    sim = dataclasses.replace(SIM, field_strength=field_strength, tr_ms=tr_ms, te_ms=te_ms, noise_std=0.0)
    labels = _labels(2)
    for percentiles in ([0.5, 99.5], [0.0, 100.0], [5.0, 95.0]):
        images = simulate(labels, sim, np.random.default_rng(0), percentiles)[:, 0]
        for c in (CSF, GM, WM):
            assert images[labels == c].min() > -1.0, (c, percentiles)
        assert np.all(images[labels == 0] == -1.0)


def test_elastic_deformation_keeps_labels_hard_and_moves_them_a_little():
    labels = _labels(4, 48)
    rng = np.random.default_rng(1)
    deformed = elastic_deform_labels(labels, 3.0, rng)
    assert deformed.shape == labels.shape and deformed.dtype == np.uint8
    assert set(np.unique(deformed)) <= set(np.unique(labels))
    changed = (deformed != labels).mean()
    assert 0.005 < changed < 0.3
    assert not np.array_equal(deformed[0], deformed[1])  # each map gets its own field
    np.testing.assert_array_equal(elastic_deform_labels(labels, 0.0, rng), labels)
    np.testing.assert_array_equal(elastic_deform_labels(labels, 3.0, np.random.default_rng(1)), deformed)
