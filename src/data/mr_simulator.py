"""MR image simulator: hard tissue labels -> spin-echo magnitude images (the "sim" domain).

Rendering: each class gets the spin-echo signal (Bloch equation, TR >> TE, full recovery
between excitations ignored beyond the T1 term):

    S = PD * (1 - exp(-TR / T1)) * exp(-TE / T2)

then Rician noise (the magnitude of a complex signal with Gaussian noise of std
`noise_std * S_WM` on both channels), then a per-split normalisation to [-1, 1] anchored
at zero signal (prepare fits it on a bounded sample of the split: src/data/sets.py): S = 0 maps to -1 (the background value) and the upper percentile of the
foreground (as data.percentiles for real slices) maps to +1. The real slices' robust window
(`preprocess.normalise_volume`) cannot be used here: on a piecewise-constant image the
darkest tissue *is* the lower percentile, so CSF would land exactly on the background
value and a sim-trained segmenter could not tell the two apart. Label maps can be elastically deformed before
rendering (random smooth displacement, nearest-neighbour sampling, so the labels stay
hard); the deformed labels are the ground truth of the rendered image.

The images are deliberately piecewise constant (no partial volume, bias field or
texture): that gap to real scans is what the sim-to-real GAN has to learn.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from src.config import SimConfig
from src.data.labels import BACKGROUND, CLASS_NAMES, CSF, GM, WM
from src.data.preprocess import BACKGROUND as BACKGROUND_VALUE

# Tissue parameters: T1 and T2 in ms, PD relative to CSF = 1.
#
# 1.5 T: the BrainWeb simulator's tissue table (Kwan, Evans & Pike, IEEE TMI 1999, "MRI
#   simulation-based evaluation of image-processing and classification methods"; BrainWeb
#   phantom of Collins et al., IEEE TMI 1998): CSF 2569/329/1.0, GM 833/83/0.86, WM 500/70/0.77.
# 3 T: GM and WM T1 and T2 from Wansapura et al., JMRI 1999;9:531-538 ("NMR relaxation times
#   in the human brain at 3.0 tesla"): GM T1 1331, WM T1 832, GM T2 110, WM T2 80 (79.6).
#   CSF T1 4163 from Lu et al., JMRI 2005;22:13-22 ("Routine clinical brain MRI sequences for
#   use at 3.0 Tesla"). APPROXIMATE: CSF T2 2000 ms (literature values at 3 T range roughly
#   1500-2000 ms; at TE << T2 it barely matters). APPROXIMATE: PD is field-independent in
#   principle, so the 1.5 T BrainWeb PD values are reused at 3 T.
TISSUE_PARAMETERS = {
    1.5: {CSF: (2569.0, 329.0, 1.00), GM: (833.0, 83.0, 0.86), WM: (500.0, 70.0, 0.77)},
    3.0: {CSF: (4163.0, 2000.0, 1.00), GM: (1331.0, 110.0, 0.86), WM: (832.0, 80.0, 0.77)},
}

DEFORMATION_SMOOTHNESS = 0.08  # std of the Gaussian smoothing the displacement, as a fraction of the image side


def tissue_parameters(field_strength: float) -> dict[int, dict]:
    """{label: {"name", "t1_ms", "t2_ms", "pd"}} for field_strength 1.5 or 3.0 tesla."""
    if field_strength not in TISSUE_PARAMETERS:
        raise ValueError(f"no tissue parameters for {field_strength} T (have {sorted(TISSUE_PARAMETERS)})")
    return {label: {"name": CLASS_NAMES[label], "t1_ms": t1, "t2_ms": t2, "pd": pd}
            for label, (t1, t2, pd) in TISSUE_PARAMETERS[field_strength].items()}


def spin_echo_signal(pd: float, t1_ms: float, t2_ms: float, tr_ms: float, te_ms: float) -> float:
    """S = PD (1 - exp(-TR/T1)) exp(-TE/T2), in units of PD."""
    return float(pd * (1.0 - np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms))


def signal_intensities(field_strength: float, tr_ms: float, te_ms: float) -> dict[int, float]:
    """Noise-free signal per label (background 0) for a spin-echo with the given TR/TE."""
    out = {BACKGROUND: 0.0}
    for label, p in tissue_parameters(field_strength).items():
        out[label] = spin_echo_signal(p["pd"], p["t1_ms"], p["t2_ms"], tr_ms, te_ms)
    return out


def render(labels: np.ndarray, intensities: dict[int, float]) -> np.ndarray:
    """Piecewise-constant signal image: each pixel gets its label's intensity (float32)."""
    lut = np.zeros(256, dtype=np.float32)
    for label, value in intensities.items():
        lut[label] = value
    return lut[labels]


def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """|signal + n_re + i n_im| with n ~ N(0, sigma^2): magnitude-image (Rician) noise."""
    if sigma == 0:
        return signal.astype(np.float32)
    real = signal + rng.normal(0.0, sigma, signal.shape)
    imag = rng.normal(0.0, sigma, signal.shape)
    return np.hypot(real, imag).astype(np.float32)


def elastic_deform_labels(labels: np.ndarray, magnitude: float, rng: np.random.Generator) -> np.ndarray:
    """Random smooth deformation of label maps, nearest-neighbour sampled (labels stay hard).

    labels: (N, H, W) uint8. For each map a displacement field is drawn as white noise,
    smoothed with a Gaussian of std DEFORMATION_SMOOTHNESS * H pixels and scaled so that its
    largest displacement is `magnitude` pixels. Outside the image is background.
    Returns (N, H, W) uint8; magnitude 0 returns a copy.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected labels of shape (N, H, W), got {labels.shape}")
    if magnitude == 0:
        return labels.copy()
    n, h, w = labels.shape
    sigma = DEFORMATION_SMOOTHNESS * max(h, w)
    grid = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty_like(labels)
    for i in range(n):
        field = np.stack([ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="reflect")
                          for _ in range(2)])
        peak = np.sqrt((field ** 2).sum(axis=0)).max()
        field *= magnitude / max(peak, 1e-12)
        out[i] = ndimage.map_coordinates(labels[i], grid + field, order=0, mode="constant", cval=BACKGROUND)
    return out


def check_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) label maps in 0..len(CLASS_NAMES)-1, else ValueError."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype != np.uint8:
        raise ValueError(f"expected uint8 labels of shape (N, H, W), got {labels.dtype} {labels.shape}")
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise ValueError(f"labels must be in 0..{len(CLASS_NAMES) - 1}, got max {labels.max()}")
    return labels


def noisy_signal(labels: np.ndarray, sim_cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """The un-normalised spin-echo magnitude signal of (N, H, W) label maps, with Rician noise (float32)."""
    intensities = signal_intensities(sim_cfg.field_strength, sim_cfg.tr_ms, sim_cfg.te_ms)
    return add_rician_noise(render(check_labels(labels), intensities), sim_cfg.noise_std * intensities[WM], rng)


def simulate(labels: np.ndarray, sim_cfg: SimConfig, rng: np.random.Generator,
             percentiles: list[float] | tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Render label maps as normalised spin-echo images, the window fitted on these maps.

    labels: (N, H, W) uint8 with classes CLASS_NAMES (0 background, 1 CSF, 2 GM, 3 WM).
    sim_cfg: field strength, TR/TE (ms) and Rician noise (fraction of the WM signal).
    percentiles: data.percentiles; only the upper one is used (it maps to +1, zero signal to -1).
    Returns (N, 1, H, W) float32 in [-1, 1], exactly -1 where labels == 0 and nowhere else
    in the noise-free case. Deterministic
    given `rng`. Elastic deformation is not applied here (see `elastic_deform_labels`).
    prepare streams a split through `noisy_signal` and `scale_from_zero_signal` instead, with the window
    fitted on a bounded sample of it (src/data/sets.py).
    """
    labels = check_labels(labels)
    signal = noisy_signal(labels, sim_cfg, rng)
    foreground = labels != BACKGROUND
    if not foreground.any():
        return np.full((len(labels), 1) + labels.shape[1:], -1.0, dtype=np.float32)
    return normalise_from_zero_signal(signal, foreground, percentiles[1])[:, None]


def foreground_high(signal: np.ndarray, foreground: np.ndarray, high_percentile: float) -> float:
    """The `high_percentile` of the foreground signal: the value that maps to +1."""
    high = float(np.percentile(signal[foreground], high_percentile))
    if high <= 0:
        raise ValueError(f"the foreground's {high_percentile}th-percentile signal is {high:g}: nothing to normalise")
    return high


def scale_from_zero_signal(signal: np.ndarray, foreground: np.ndarray, high: float) -> np.ndarray:
    """Map signal 0 to -1 and `high` to +1 (clipped); background exactly -1.

    Every tissue has a positive spin-echo signal (PD > 0, TR > 0), so every tissue lands strictly
    above the background value whatever the TR/TE/field strength.
    """
    out = np.clip(signal.astype(np.float32) / np.float32(high), 0.0, 1.0) * 2.0 - 1.0
    out[~foreground] = BACKGROUND_VALUE
    return out.astype(np.float32)


def normalise_from_zero_signal(signal: np.ndarray, foreground: np.ndarray, high_percentile: float) -> np.ndarray:
    """`scale_from_zero_signal` with the window's top at the `high_percentile` of this foreground's signal."""
    return scale_from_zero_signal(signal, foreground, foreground_high(signal, foreground, high_percentile))
