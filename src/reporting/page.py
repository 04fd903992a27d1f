"""The report page: figures from dvc.yaml's plot definitions, the template's context from the metrics, rendering."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from src.evaluation import schema
from src.reporting import tables
from src.reporting.figures import Figure, curves_png, figure, intervals_png, png_size, reliability_png
from src.reporting.inputs import PlotDefinition, SegmenterScores, read_points, read_tsv

INTERVAL_TEMPLATE = "bar_ci95.json"  # dvc.yaml plots drawn with it are interval charts; the others are curves
EXAMPLE_CAPTIONS = {
    "sr_grid.png": (
        "Super-resolution on test slices, one slice per row. Columns: LR input | naive upsampling (baseline) | "
        "PSNR model (L1 only) | GAN model | HR ground truth | |GAN − HR| error | TTA uncertainty of the GAN "
        "(spread of its outputs over test-time augmentations) | |GAN − PSNR model| (hallucination map: detail "
        "the GAN adds that the pixel-loss model does not). Bright error and bright uncertainty in the same "
        "places is what a useful uncertainty map looks like."),
    "sr_calibration.png": (
        "The PSNR model's calibrated uncertainty on test slices, one slice per row. Columns: HR | PSNR model | "
        "foreground pixels whose error exceeds the bound (white; about 10 % if the bound holds) | |PSNR model − HR| "
        "| the bound k·σ_TTA. The last two share the colour bar, in units of intensity error: model units, where "
        "the image range [−1, 1] spans 2. A useful map is bright where the error is."),
    "sim2real_grid.png": (
        "Sim-to-real on test slices, one slice per row. Columns: raw simulation | the CycleGAN trained on raw sim, "
        "applied to it | |translated − input| | the classical rendering (blur + histogram matching) | the CycleGAN "
        "trained on classical renderings, applied to it | |translated − input| | the real slice of the same "
        "anatomy | the judge segmenter's labels on CycleGAN(classical) | the simulator's labels. Both change maps "
        "share one colour scale, in model units (the image range [−1, 1] spans 2): black means the translator "
        "left the pixel alone. The judge's labels should follow the simulator's: if not, the translation "
        "changed content, not just appearance."),
}


def plot_figures(definitions: list[PlotDefinition]) -> tuple[list[Figure], list[Figure]]:
    """(training curves, interval charts), one figure per dvc.yaml plot definition, from the same files and fields."""
    curves, charts = [], []
    for index, definition in enumerate(definitions):
        slug = f"plot-{index}-" + re.sub(r"[^a-z0-9]+", "-", definition.title.lower()).strip("-")
        sources = ", ".join(definition.y)
        if definition.template.endswith(INTERVAL_TEMPLATE):
            points = [p for path, y in definition.y.items() for p in read_points(Path(path), (definition.x, y))]
            field = next(iter(definition.y.values()))
            png = intervals_png(definition.title, points, definition.x, field)
            charts.append(figure(png, png_size(png), definition.title, f"{definition.title}: value (bar) and 95 % "
                                 f"bootstrap interval (whisker) per {field}, one panel per metric (from {sources}).",
                                 slug))
        else:
            series = {_series_name(path): read_tsv(Path(path), y) for path, y in definition.y.items()}
            png = curves_png(definition.title, series, definition.x)
            smoothed = any(len(values) >= 50 for _, values in series.values())
            curves.append(figure(png, png_size(png), definition.title, f"{definition.title} by {definition.x} "
                                 f"(dvc.yaml plots, from {sources})."
                                 + (" Faint: logged values; solid: moving average." if smoothed else ""), slug))
    return curves, charts


def _series_name(path: str) -> str:
    # pipeline/train_sr/live/plots/metrics/g/pixel.tsv -> train_sr g/pixel
    parts = Path(path).with_suffix("").parts
    if "metrics" in parts:
        stage = parts[1] if parts[0] == "pipeline" else parts[0]
        return f"{stage} {'/'.join(parts[parts.index('metrics') + 1:])}"
    return Path(path).with_suffix("").as_posix()


def context(metrics: schema.Metrics, segmenter: SegmenterScores, params: dict, examples: dict[str, tuple[bytes, tuple]],
            curves: list[Figure], charts: list[Figure], reliability: list[dict]) -> dict:
    """Everything the template shows. Every metrics.json section is required: the schema has checked them.
    `reliability`: the points of pipeline/evaluate/plots/reliability.json."""
    protocol, sr, s2r = metrics.protocol, metrics.sr, metrics.sim2real
    kid_key, fd_key = schema.distance_keys(protocol.feature_space)
    grids = {name: figure(*examples[name], name, caption, name.replace(".", "-"))
             for name, caption in EXAMPLE_CAPTIONS.items()}
    backbones, weak = tables.backbones_table(metrics.backbones.model_dump()
                                             | {"encoder_weights": segmenter.encoder_weights})
    dice_keys = (*schema.foreground(protocol.class_names), "mean_foreground")
    return {
        "protocol": protocol,
        "fd_name": "FID" if fd_key == "fid" else "FD",
        "backbones": backbones, "weak": weak,
        "sr_quality": tables.estimate_table("sr-metrics", sr, "sr", schema.SR_QUALITY + ("swd", kid_key, fd_key)),
        "sr_uncertainty": tables.labelled_estimates_table("sr-uncertainty", sr.uncertainty, "Spearman ρ ↑ [95 %]"),
        "calibration": sr.calibration,
        "sr_calibration": tables.calibration_table("sr-calibration", sr.calibration),
        "sr_reliability": _reliability_figure(reliability, sr.calibration.target_coverage),
        "sr_comparisons": tables.comparison_table("sr-comparisons", {p: schema.section(metrics, p) for p in (
            "sr.psnr_model_vs_naive", "sr.gan_vs_psnr_model")}),
        "realism": tables.estimate_table("s2r-realism", s2r.realism, "sim2real.realism", ("swd", kid_key, fd_key)),
        "fidelity": tables.estimate_table("s2r-fidelity", s2r.fidelity, "sim2real.fidelity", schema.FIDELITY),
        "content": tables.estimate_table("s2r-content", s2r.content, "sim2real.content", dice_keys),
        "downstream": tables.downstream_table("s2r-downstream", s2r.downstream, s2r.downstream_vs_classical,
                                              (*dice_keys, "gap_closed_fraction")),
        "s2r_comparisons": tables.comparison_table("s2r-comparisons", {p: schema.section(metrics, p) for p in (
            *(f"sim2real.fidelity_vs_classical.{row}" for row in schema.FIDELITY_VS_CLASSICAL_ROWS),
            *(f"sim2real.fidelity_vs_raw_sim.{row}" for row in schema.FIDELITY_VS_RAW_SIM_ROWS),
            "sim2real.translated_vs_raw_sim", "sim2real.translated_classical_vs_classical",
            *(f"sim2real.downstream_vs_classical.{row}" for row in schema.DOWNSTREAM_VS_CLASSICAL_ROWS),
            *(f"sim2real.downstream_vs_randomized.{row}" for row in schema.DOWNSTREAM_VS_RANDOMIZED_ROWS),
            *(f"sim2real.downstream_vs_sim_only.{row}" for row in schema.DOWNSTREAM_ROWS[1:]))}),
        "gap": tables.interval_text(s2r.downstream.translated_classical["gap_closed_fraction"]),
        "gap_classical": tables.interval_text(s2r.downstream.classical["gap_closed_fraction"]),
        "sr_grid": grids["sr_grid.png"], "sim2real_grid": grids["sim2real_grid.png"],
        "sr_calibration_grid": grids["sr_calibration.png"],
        "extra_examples": [figure(data, size, name, f"{name} (pipeline/evaluate/examples)", f"example-{name}")
                           for name, (data, size) in examples.items() if name not in EXAMPLE_CAPTIONS],
        "segmenter_dice": tables.segmenter_dice_table(segmenter.dice),
        "segmenter_other": tables.key_value_table("segmenter-other", segmenter.other),
        "curves": curves, "charts": charts,
        "protocol_table": tables.key_value_table("protocol", tables.flatten(protocol.model_dump())
                                                 | {"wall_time_s (evaluate stage)": metrics.wall_time_s}),
        "params_tables": tables.params_tables(params),
    }


def _reliability_figure(points: list[dict], level: float) -> Figure:
    png = reliability_png(points, level)
    return figure(png, png_size(png), "SR reliability plot", (
        f"Reliability of the calibrated bound on the test foreground (pipeline/evaluate/plots/reliability.json). "
        f"Pixels are sorted by their predicted bound k·σ into bins of equal size. Left: the observed {level:.0%} "
        f"quantile of |error| in each bin against the bin's mean bound, in model units; on the diagonal, the bound "
        f"is right in that bin, above it the bound is too small. Right: the fraction of each bin's pixels within "
        f"the bound; the target is {level:.0%} in every bin, only the overall fraction is guaranteed."),
        "sr-reliability")


def render(page_context: dict) -> str:
    """The HTML page: src/templates/report.html.j2, autoescaped; an unknown template variable is an error."""
    environment = Environment(loader=PackageLoader("src", "templates"), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("report.html.j2").render(**page_context)
