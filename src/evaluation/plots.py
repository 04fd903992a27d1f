"""Data of the interval charts: pipeline/evaluate/plots/{estimates,differences}.json, and of the SR
reliability plot: plots/reliability.json.

One point per (metric, method) with its 95 % interval. dvc.yaml's top-level `plots:` draws
them with src/templates/vega/bar_ci95.json (bars with error bars, one panel per
metric), and the report redraws the same definitions. The reliability plot (observed error
against the calibrated bound, binned) is drawn with src/templates/vega/reliability.json.
"""

from __future__ import annotations

import json
import math

from src.evaluation import schema
from src.evaluation.labels import COMPARISONS, ROWS, arrow, label, verdict_text

# (panel prefix, section path, rows, metric key)
ESTIMATE_PANELS = (
    ("SR", "sr", schema.SR_METHODS, "psnr_db"),
    ("SR", "sr", schema.SR_METHODS, "ssim"),
    ("SR", "sr", schema.SR_METHODS, "swd"),
    ("sim2real realism", "sim2real.realism", schema.REALISM_SETS, "swd"),
    ("sim2real content", "sim2real.content", schema.CONTENT_SETS, "mean_foreground"),
    ("sim2real downstream", "sim2real.downstream", schema.DOWNSTREAM_ROWS, "mean_foreground"),
)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON null, not NaN, for the browser


def _point(panel: str, method: str, item) -> dict:
    return {"metric": panel, "method": method, "value": _finite(item.value), "ci95_low": _finite(item.ci95_low),
            "ci95_high": _finite(item.ci95_high), "n": item.n}


def estimate_points(metrics: schema.Metrics) -> list[dict]:
    return [_point(f"{prefix}: {label(key)} {arrow(key)}", ROWS[path][row],
                   schema.section(metrics, f"{path}.{row}")[key])
            for prefix, path, rows, key in ESTIMATE_PANELS for row in rows]


def difference_points(metrics: schema.Metrics) -> list[dict]:
    """A − B per comparison and metric; `verdict` is the decision rule's reading of the interval."""
    points = []
    for path, (a, b) in COMPARISONS.items():
        prefix = "SR" if path.startswith("sr.") else "downstream" if "downstream" in path else "sim2real"
        for key, item in schema.section(metrics, path).items():
            points.append(_point(f"{prefix}: {label(key)} {arrow(key)}", f"{a} − {b}", item)
                          | {"verdict": verdict_text(item.better, a, b)})
    return points


def reliability_points(bins: dict[str, list[dict]]) -> list[dict]:
    """plots/reliability.json: per SR model and bin of its calibrated bound k * sigma on the test foreground,
    the predicted bound against the observed error (src/metrics/uncertainty.py reliability_bins), model units."""
    return [{"method": ROWS["sr"][model], "bin": index + 1, **{k: _finite(v) if isinstance(v, float) else v
                                                               for k, v in row.items()}}
            for model, rows in bins.items() for index, row in enumerate(rows)]


def to_json(points: list[dict]) -> str:
    return json.dumps(points, indent=1, allow_nan=False) + "\n"
