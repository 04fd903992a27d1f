"""Intensity normalisation, foreground masks, slicing, square foreground crops and resizing.

Pure functions on numpy arrays; inputs are never modified. Model-range images are float32
in [-1, 1] with the background exactly -1 (the value the GANs' tanh outputs and the k-space
degradation in `degrade.py` treat as zero signal). Label maps are uint8.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.filters import threshold_otsu

BACKGROUND = -1.0
CROP_MARGIN = 0.05  # fraction of the box side added on every side of the foreground box


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity) of a boolean array."""
    labelled, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes in 3-D and then slice by slice along every axis.

    The 3-D fill closes cavities sealed in every direction; the slice-wise fills also close
    cavities that touch the volume only through a slice's out-of-plane neighbours (and work
    on one-slice volumes, where nothing is enclosed in 3-D).
    """
    out = ndimage.binary_fill_holes(mask)
    if out.ndim != 3:
        return out
    for axis in range(3):
        if out.shape[axis] == 1:
            continue
        moved = np.moveaxis(out, axis, 0)
        moved = np.stack([ndimage.binary_fill_holes(s) for s in moved])
        out = np.moveaxis(moved, 0, axis)
    return out


def foreground_mask(vol: np.ndarray) -> np.ndarray:
    """Head/object mask of an image without labels: Otsu threshold, largest connected
    component, holes filled (so dark ventricles and sinuses count as foreground).

    vol: (X, Y, Z) any intensity scale. Returns bool of the same shape (all False when
    the image is constant).
    """
    if float(vol.max()) == float(vol.min()):
        return np.zeros(vol.shape, dtype=bool)
    mask = vol > threshold_otsu(vol)
    return fill_holes(largest_component(mask))


def normalise_volume(vol: np.ndarray, foreground_mask: np.ndarray, percentiles: list[float] | tuple[float, float]) -> np.ndarray:
    """Map the robust intensity window of the foreground to [-1, 1]; background exactly -1.

    vol: any shape, any intensity scale. foreground_mask: bool, same shape, non-empty.
    percentiles: (low, high) in [0, 100], computed over foreground voxels only; values
    outside the window are clipped. Returns a new float32 array.
    """
    if vol.shape != foreground_mask.shape:
        raise ValueError(f"mask shape {foreground_mask.shape} does not match volume shape {vol.shape}")
    foreground = vol[foreground_mask]
    if foreground.size == 0:
        raise ValueError("empty foreground: nothing to normalise")
    low, high = np.percentile(foreground, percentiles)
    if high <= low:
        raise ValueError(f"foreground intensities are constant within percentiles {list(percentiles)} ({low:g})")
    out = (vol.astype(np.float32) - np.float32(low)) / np.float32(high - low) * 2.0 - 1.0
    out = np.clip(out, -1.0, 1.0)
    out[~foreground_mask] = BACKGROUND
    return out.astype(np.float32)


def slices_along(vol: np.ndarray, axis: int) -> np.ndarray:
    """(X, Y, Z) volume -> (S, rows, cols) slices along `axis`, in screen orientation.

    The in-plane axes are transposed so that the later volume axis becomes the rows: with
    the io.py convention (axis 0 across, axes 1 and 2 top-to-bottom) every slice is upright.
    """
    moved = np.moveaxis(vol, axis, 0)
    return np.ascontiguousarray(np.swapaxes(moved, 1, 2))


def slice_geometry(shape: tuple[int, ...], spacing: tuple[float | None, ...], axis: int
                   ) -> tuple[tuple[int, int], tuple[float | None, float | None]]:
    """(rows, cols) and (row, col) pixel spacing of the slices `slices_along` cuts along `axis` from a
    volume of `shape` whose voxels measure `spacing` (mm per axis, None where unknown): rows run
    along the later of the two in-plane axes."""
    col_axis, row_axis = (a for a in range(3) if a != axis)
    return (shape[row_axis], shape[col_axis]), (spacing[row_axis], spacing[col_axis])


def square_pixel_shape(shape: tuple[int, int], spacing: tuple[float | None, float | None]) -> tuple[int, int]:
    """(rows, cols) of a slice of `shape` resampled to square pixels of its finer `spacing` (row, col mm):
    the anatomy's true aspect ratio, no in-plane detail given up. `shape` itself when a spacing is
    unknown, or when the pixels are square to within half a pixel across the slice."""
    if None in spacing:
        return tuple(shape)
    finer = min(spacing)
    return tuple(max(1, round(n * mm / finer)) for n, mm in zip(shape, spacing))


def resample_images(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) float -> (N, *shape) float32, bilinear (pixel centres, align_corners=False: the field of
    view is kept). Meant for upsampling (`square_pixel_shape`): no antialiasing."""
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0].numpy()


def resample_labels(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) integer labels -> (N, *shape) uint8 by nearest neighbour (no new classes)."""
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.uint8))[:, None].float()
    return F.interpolate(x, size=tuple(shape), mode="nearest-exact")[:, 0].round().to(torch.uint8).numpy()


def foreground_fractions(mask_slices: np.ndarray) -> np.ndarray:
    """(S, H, W) bool -> (S,) fraction of foreground pixels per slice."""
    return mask_slices.reshape(len(mask_slices), -1).mean(axis=1)


def kept_slices(mask_slices: np.ndarray, min_foreground: float) -> np.ndarray:
    """Indices of slices whose foreground fraction is >= min_foreground (and > 0)."""
    fractions = foreground_fractions(mask_slices)
    return np.flatnonzero((fractions >= min_foreground) & (fractions > 0))


def square_box(mask_slices: np.ndarray, margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """One square box around the foreground of a whole stack: (row0, col0, side).

    A single box per stack keeps one pixel size for all its slices. The side is the
    larger bounding-box extent plus `margin` * extent on each side; the box is centred on
    the foreground and may extend past the image (`crop_square` pads it).
    """
    any_fg = mask_slices.any(axis=0)
    if not any_fg.any():
        raise ValueError("empty foreground: no box to crop")
    rows = np.flatnonzero(any_fg.any(axis=1))
    cols = np.flatnonzero(any_fg.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    extent = max(height, width)
    side = int(extent + 2 * int(np.ceil(margin * extent)))
    row0 = int((rows[0] + rows[-1] + 1) // 2 - side // 2)
    col0 = int((cols[0] + cols[-1] + 1) // 2 - side // 2)
    return row0, col0, side


def crop_square(stack: np.ndarray, box: tuple[int, int, int], fill: float) -> np.ndarray:
    """Crop (N, H, W) to the square `box` from `square_box`; parts outside the image are `fill`."""
    row0, col0, side = box
    n, h, w = stack.shape
    out = np.full((n, side, side), fill, dtype=stack.dtype)
    r0, r1 = max(row0, 0), min(row0 + side, h)
    c0, c1 = max(col0, 0), min(col0 + side, w)
    if r1 > r0 and c1 > c0:
        out[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = stack[:, r0:r1, c0:c1]
    return out


def resize_images(stack: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) float -> (N, size, size) float32, bilinear with antialiasing when shrinking."""
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y[:, 0].numpy()


def resize_labels(stack: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) integer labels -> (N, size, size) uint8 by nearest neighbour (no new classes)."""
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.uint8))[:, None].float()
    y = F.interpolate(x, size=(size, size), mode="nearest-exact")
    return y[:, 0].round().to(torch.uint8).numpy()


def set_background(images: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Images with every non-foreground pixel exactly -1 and values clipped to [-1, 1]
    (bilinear resizing blurs a fraction of a grey level across the mask edge)."""
    out = np.clip(images, -1.0, 1.0).astype(np.float32)
    out[~foreground] = BACKGROUND
    return out
