"""Hard tissue label maps (background, CSF, GM, WM) from tissue probability maps.

The class indices are shared by the simulator (one T1/T2/PD entry per class), the
segmenter and the semantic-consistency loss.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from src.data.preprocess import fill_holes, largest_component

CLASS_NAMES = ("background", "csf", "gm", "wm")
BACKGROUND, CSF, GM, WM = 0, 1, 2, 3
NUM_CLASSES = len(CLASS_NAMES)

# Brain mask from the MNI152 tissue maps. nilearn ships no mask for the 2009a template;
# nilearn's own load_mni152_brain_mask thresholds the template at 0.2, and the same 0.2
# on gm + wm keeps partial-volume cortex. Two closing iterations (6-connected) seal the
# sulci at the brain surface; filling holes puts the ventricles inside (labelled CSF).
BRAIN_THRESHOLD = 0.2
CLOSING_ITERATIONS = 2


def brain_mask_from_tissue(gm_prob: np.ndarray, wm_prob: np.ndarray, threshold: float = BRAIN_THRESHOLD,
                           closing_iterations: int = CLOSING_ITERATIONS) -> np.ndarray:
    """Brain mask: gm + wm > threshold, binary closing, largest component, holes filled
    in 3-D and slice-wise (see `preprocess.fill_holes`).

    gm_prob, wm_prob: probability maps in [0, 1], same 3-D shape. Returns bool.
    """
    mask = (gm_prob + wm_prob) > threshold
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    # Work inside the bounding box (plus room for the closing): same result, a few times faster.
    pad = closing_iterations + 1
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(mask))
    crop = np.pad(mask[box], pad)
    if closing_iterations > 0:
        crop = ndimage.binary_closing(crop, iterations=closing_iterations)
    crop = fill_holes(largest_component(crop))
    out[box] = crop[(slice(pad, -pad),) * mask.ndim]
    return out


def tissue_labels(gm_prob: np.ndarray, wm_prob: np.ndarray, brain_mask: np.ndarray) -> np.ndarray:
    """Hard labels: 0 outside the mask; inside, the argmax of (csf, gm, wm) with
    csf = clip(1 - gm - wm, 0, 1); ties go to the lower class index.

    gm_prob, wm_prob: probabilities in [0, 1]; brain_mask: bool; all the same shape.
    Returns uint8 labels in {0, 1, 2, 3} (see CLASS_NAMES).
    """
    if not (gm_prob.shape == wm_prob.shape == brain_mask.shape):
        raise ValueError(f"shapes differ: gm {gm_prob.shape}, wm {wm_prob.shape}, mask {brain_mask.shape}")
    csf_prob = np.clip(1.0 - gm_prob - wm_prob, 0.0, 1.0)
    probs = np.stack([csf_prob, gm_prob, wm_prob])
    labels = (np.argmax(probs, axis=0) + CSF).astype(np.uint8)
    labels[~brain_mask.astype(bool)] = BACKGROUND
    return labels
