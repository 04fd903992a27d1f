"""pipeline/evaluate/per_slice.csv: every per-slice value behind the headline metrics, one row per
(task, method, slice[, seed]), so users can run their own statistics.

Columns: task (sr | fidelity | content | downstream), method, slice (index in the task's test split),
seed (downstream segmenters only), then the metrics of that task; other cells are empty.
Means over slices (NaN left out) reproduce the headline values of PSNR, SSIM, data
consistency and the Spearman correlations; Dice is pooled over pixels, so the headline
Dice of a class is sum(dice_<class>_num) / sum(dice_<class>_den) over the method's slices
(averaged over seeds for downstream rows), while dice_<class> is each slice's own Dice.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from src.evaluation.schema import foreground

KEY_COLUMNS = ("task", "method", "slice", "seed")
SR_COLUMNS = ("psnr_db", "ssim", "data_consistency_psnr_db", "tta_spearman", "hallucination_spearman")
FIDELITY_COLUMNS = ("fidelity_psnr_db", "fidelity_ssim", "fidelity_mae")  # sim-to-real paired, foreground only


def columns(class_names: list[str]) -> list[str]:
    names = foreground(class_names)
    return [*KEY_COLUMNS, *SR_COLUMNS, *FIDELITY_COLUMNS, *(f"dice_{c}" for c in names), "dice_mean_foreground",
            *(f"dice_{c}_{part}" for c in names for part in ("num", "den"))]


def slice_rows(task: str, method: str, values: dict[str, np.ndarray], seed: int | None = None) -> list[dict]:
    """One row per slice: values {column: (n,) array}."""
    n = len(next(iter(values.values())))
    return [{"task": task, "method": method, "slice": i, "seed": "" if seed is None else seed,
             **{key: float(column[i]) for key, column in values.items()}} for i in range(n)]


def to_csv(rows: list[dict], class_names: list[str]) -> str:
    """The CSV text; floats at full precision (repr), NaN as `nan`, inapplicable cells empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(class_names), restval="", extrasaction="raise",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
