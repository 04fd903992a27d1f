"""Titled image grids (uint8) for training samples and the report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

LABEL_COLOURS = np.array([[0, 0, 0], [66, 135, 245], [245, 166, 35], [240, 240, 240]], dtype=np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] -> (N, H, W) uint8, clipped."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x[:, 0].numpy().astype(np.uint8)


def difference_map(output: torch.Tensor, source: torch.Tensor) -> tuple[np.ndarray, float]:
    """|output - source| as (N, H, W) uint8 scaled by its own maximum, and that maximum.

    Shows where a translation changed the image: an identity map is black everywhere.
    """
    diff = (output.detach().float().cpu() - source.detach().float().cpu()).abs()[:, 0]
    peak = float(diff.max())
    scaled = diff / peak if peak > 0 else diff
    return (scaled * 255).round().numpy().astype(np.uint8), peak


def overlay_labels(images: torch.Tensor, labels: torch.Tensor, alpha: float = 0.45) -> np.ndarray:
    """Grey images with label colours blended on top: (N, H, W, 3) uint8. Class 0 is left uncoloured."""
    grey = to_uint8(images)[..., None].repeat(3, axis=-1).astype(np.float32)
    lab = labels.cpu().numpy().astype(np.int64)
    colours = LABEL_COLOURS[np.clip(lab, 0, len(LABEL_COLOURS) - 1)].astype(np.float32)
    mask = (lab > 0)[..., None]
    return np.where(mask, (1 - alpha) * grey + alpha * colours, grey).round().astype(np.uint8)


def grid(columns: list[np.ndarray | torch.Tensor], titles: list[str], size: int | None = None) -> np.ndarray:
    """Rows = samples, columns = the given image sets, each column titled. Returns (H, W, 3) uint8.

    Tensor columns are (N, 1, h, w) in [-1, 1] (LR inputs are shown nearest-upsampled to
    the largest size); array columns are (N, H, W) uint8 grey or (N, H, W, 3) colour.
    """
    if len(columns) != len(titles):
        raise ValueError("one title per column")
    if size is None:
        size = max(c.shape[-1] if isinstance(c, torch.Tensor) else c.shape[2] for c in columns)
    prepared = []
    for col in columns:
        if isinstance(col, torch.Tensor):
            col = F.interpolate(col.detach().float().cpu(), size=(size, size), mode="nearest")
            col = to_uint8(col)
        if col.ndim == 3:
            col = col[..., None].repeat(3, axis=-1)
        if col.shape[1] != size:
            col = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.NEAREST)) for c in col])
        prepared.append(col)
    n = min(len(c) for c in prepared)
    pad, title_h = 2, 14
    canvas = np.full((title_h + n * (size + pad), len(prepared) * (size + pad), 3), 255, np.uint8)
    for j, col in enumerate(prepared):
        for i in range(n):
            y, x = title_h + i * (size + pad), j * (size + pad)
            canvas[y:y + size, x:x + size] = col[i]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for j, title in enumerate(titles):
        draw.text((j * (size + pad) + 2, 1), title, fill=(0, 0, 0))
    return np.asarray(image)
