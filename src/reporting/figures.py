"""The report's figures, drawn with matplotlib from the same data and definitions as dvc.yaml's `plots:`."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure as MplFigure


@dataclass(frozen=True)
class Figure:
    id: str
    src: str       # data:image/png;base64,...
    width: int
    height: int
    alt: str
    caption: str


def figure(png: bytes, size: tuple[int, int], alt: str, caption: str, figure_id: str) -> Figure:
    return Figure(figure_id, "data:image/png;base64," + base64.b64encode(png).decode("ascii"), size[0], size[1],
                  alt, caption)


def smoothing_window(n_points: int) -> int:
    """Moving-average length for a curve of n points: 1 (no smoothing) below 50 points."""
    return max(1, n_points // 25)


def curves_png(title: str, series: dict[str, tuple[np.ndarray, np.ndarray]], x_label: str) -> bytes:
    """One panel, one line per series {label: (steps, values)}; faint raw values under a moving average."""
    fig = MplFigure(figsize=(11, 3.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    for name, (steps, values) in series.items():
        window = smoothing_window(len(values))
        if window > 1:
            (line,) = ax.plot(steps, values, lw=0.7, alpha=0.3)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, lw=1.6, color=line.get_color(), label=name)
        else:
            ax.plot(steps, values, lw=1.4, marker="." if len(values) < 10 else None, label=name)
    finite = [v[np.isfinite(v)] for _, v in series.values()]
    medians = [float(np.median(v)) for v in finite if len(v)]
    if all(len(v) and (v > 0).all() for v in finite) and len(medians) > 1 and max(medians) / min(medians) > 30:
        ax.set_yscale("log")
        title += " (log scale)"
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def intervals_png(title: str, points: list[dict], x: str, y: str) -> bytes:
    """One panel per `metric`: a horizontal bar per `y` label at `x`, with its [ci95_low, ci95_high] error bar.

    The drawing of src/templates/vega/bar_ci95.json (bars, black interval whiskers, a panel
    per metric with its own scale); a missing interval (NaN or null) draws no whisker.
    """
    panels: dict[str, list[dict]] = {}
    for point in points:
        panels.setdefault(point["metric"], []).append(point)
    rows = sum(len(p) for p in panels.values())
    fig = MplFigure(figsize=(9, 0.32 * rows + 0.8 * len(panels) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[len(p) for p in panels.values()])[:, 0]
    for ax, (metric, group) in zip(axes, panels.items()):
        values = np.array([_number(p[x]) for p in group])
        low = np.array([_number(p["ci95_low"]) for p in group])
        high = np.array([_number(p["ci95_high"]) for p in group])
        positions = np.arange(len(group))[::-1]
        ax.barh(positions, np.nan_to_num(values), height=0.55, alpha=0.6)
        whiskers = np.isfinite(low) & np.isfinite(high)
        ax.errorbar(values[whiskers], positions[whiskers],
                    xerr=np.abs(np.stack([values - low, high - values])[:, whiskers]), fmt="none", ecolor="black",
                    elinewidth=1.6, capsize=4)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(positions, [p[y] for p in group], fontsize=9)
        ax.set_title(metric, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=12)
    return _png(fig)


def reliability_png(points: list[dict], level: float) -> bytes:
    """The SR reliability plot (plots/reliability.json, src/templates/vega/reliability.json): per model, the
    observed `level` quantile of |error| against the predicted bound k·σ, per bin, beside the diagonal; and
    each bin's coverage against the target `level`."""
    fig = MplFigure(figsize=(10, 3.8), dpi=100, layout="constrained")
    bound_ax, coverage_ax = fig.subplots(1, 2)
    methods = list(dict.fromkeys(p["method"] for p in points))
    for method in methods:
        group = [p for p in points if p["method"] == method]
        predicted = np.array([_number(p["predicted"]) for p in group])
        bound_ax.plot(predicted, [_number(p["observed_quantile"]) for p in group], marker="o", lw=1.4, label=method)
        coverage_ax.plot([p["bin"] for p in group], [_number(p["coverage"]) for p in group], marker="o", lw=1.4,
                         label=method)
    top = max(max(_number(p["predicted"]), _number(p["observed_quantile"])) for p in points)
    bound_ax.plot([0, top], [0, top], color="grey", ls="--", lw=1, label="calibrated in every bin")
    bound_ax.set_xlabel("predicted bound k·σ, bin mean (model units)")
    bound_ax.set_ylabel(f"observed {level:.0%} quantile of |error|")
    coverage_ax.axhline(level, color="grey", ls="--", lw=1, label=f"target {level:.0%}")
    coverage_ax.set_xlabel("bin of the predicted bound (equal pixel counts, low → high)")
    coverage_ax.set_ylabel("fraction of pixels within the bound")
    for ax in (bound_ax, coverage_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("SR uncertainty: reliability of the calibrated bound on the test foreground", fontsize=12)
    return _png(fig)


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _png(fig: MplFigure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    # PNG header: width and height are the big-endian 32-bit integers at bytes 16..24.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
