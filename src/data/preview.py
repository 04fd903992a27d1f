"""The prepare stage's preview: HR | LR | naive | sim | real | labels for a few test slices, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.config import DataConfig
from src.data.labels import CLASS_NAMES, NUM_CLASSES

PREVIEW_ROWS = 4


def write_preview(path: Path, sr_test: dict[str, np.ndarray], s2r_test: dict[str, np.ndarray] | None,
                  data: DataConfig) -> None:
    """Up to PREVIEW_ROWS evenly spaced test slices: the sr arrays (and the sim2real ones, when
    written) side by side, images in the window [-1, 1], labels in four colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = len(sr_test["hr"])
    rows = np.unique(np.linspace(0, n - 1, min(PREVIEW_ROWS, n)).round().astype(int)) if n else []
    columns = [("HR", "hr"), (f"LR (x{data.scale} {data.degradation})", "lr"), ("naive upsampling", "naive")]
    if s2r_test is not None:
        columns += [("sim (same labels)", "sim"), ("real", "real"), ("labels", "real_labels")]
    label_cmap = ListedColormap(["black", "tab:blue", "tab:orange", "white"])
    fig, axes = plt.subplots(max(len(rows), 1), len(columns), figsize=(2.2 * len(columns), 2.3 * max(len(rows), 1)),
                             squeeze=False)
    for r, i in enumerate(rows):
        for c, (title, key) in enumerate(columns):
            ax = axes[r, c]
            source = sr_test if key in sr_test else s2r_test
            img = source[key][i]
            if key.endswith("labels"):
                ax.imshow(img, cmap=label_cmap, vmin=0, vmax=NUM_CLASSES - 1, interpolation="nearest")
            else:
                ax.imshow(img[0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"test slice {int(sr_test['slice_index'][i])}", fontsize=8)
    if s2r_test is None:
        note = "no labels: sim-to-real sets not written"
    else:
        colours = ("black", "blue", "orange", "white")
        note = "labels: " + ", ".join(f"{colour}={name}" for colour, name in zip(colours, CLASS_NAMES))
    fig.suptitle(f"prepare: test split ({n} slices, {data.image_size} px, window [-1, 1]); {note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
