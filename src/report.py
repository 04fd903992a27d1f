"""DVC stage `report`: one self-contained HTML page with the params, metrics with intervals, curves and sample grids.

Reads pipeline/evaluate/metrics.json through its typed schema (src/evaluation/schema.py):
a missing or unknown section is an error naming the key and the file, not a hidden table.
Curves and interval charts are drawn from dvc.yaml's top-level `plots:` definitions, so the
report and `dvc plots show` show the same series. The page is src/templates/report.html.j2.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

from src.atomic import write_text
from src.config import Params, as_dict
from src.evaluation import schema
from src.reporting import inputs
from src.reporting.page import context, plot_figures, render
from src.stage import run_stage

log = logging.getLogger(__name__)

DVC_YAML = Path("dvc.yaml")
EVAL_METRICS = Path("pipeline/evaluate/metrics.json")
EXAMPLES = Path("pipeline/evaluate/examples")
RELIABILITY = Path("pipeline/evaluate/plots/reliability.json")
RELIABILITY_FIELDS = ("method", "bin", "predicted", "observed_quantile", "coverage")
SEGMENTER_METRICS = Path("pipeline/train_segmenter/metrics.json")
SEGMENTER_SPLITS = ("val_sim", "val_real")
OUT = Path("pipeline/report/report.html")
DESCRIPTION = (
    "Build the pipeline report. Reads params.yaml, pipeline/evaluate/metrics.json, "
    "pipeline/evaluate/examples/**/*.png, pipeline/evaluate/plots/reliability.json, "
    "pipeline/train_segmenter/metrics.json and the files of dvc.yaml's "
    "top-level plots (training curves, pipeline/evaluate/plots/*.json), relative to the current directory. "
    f"Writes one self-contained HTML file, {OUT}: metric tables with 95 % intervals and paired comparisons, "
    "backbone weights, curves, interval charts and sample grids, all images embedded. A missing input or a "
    "metrics.json that does not match its schema is an error (exit 1) and nothing is written.")


def origin(path: str) -> str:
    """The stage that writes a pipeline file (pipeline/<stage>/...)."""
    parts = Path(path).parts
    return f"stage {parts[1]}" if len(parts) > 2 and parts[0] == "pipeline" else "the repository"


def without_switched_off_terms(definition: inputs.PlotDefinition) -> inputs.PlotDefinition:
    """A loss-curve plot without the generator loss terms its stage did not log, as long as others were logged.

    A loss term whose weight is 0 is not computed, so not logged (`dvc exp run -S
    train.sr.lambda_adv=0`): that curve is left out of its chart, with a log line. A chart none
    of whose files exist is still a missing input (the stage did not run, or wrote elsewhere).
    """
    def switchable(path: str) -> bool:
        """Only G's loss terms can be switched off, and only in a stage that logged another curve of the chart
        (the PSNR phase's pixel loss, alone from train_sr_psnr, is always logged)."""
        logged_by_stage = Path(path).parent.parent  # .../<stage>/live/plots/metrics
        return Path(path).parent.name == "g" and any(Path(other).is_file() for other in definition.y
                                                     if other != path and Path(other).parent.parent == logged_by_stage)

    present = {path: field for path, field in definition.y.items() if Path(path).is_file() or not switchable(path)}
    if not any(Path(path).is_file() for path in present) or len(present) == len(definition.y):
        return definition
    for path in sorted(set(definition.y) - set(present)):
        log.info("%s: %s was not logged (its loss weight is 0?); the chart shows the other curves",
                 definition.title, path)
    return replace(definition, y=present)


def build_page(params: Params) -> str:
    """Read every input (relative to the cwd) and return the report's HTML."""
    expected = {DVC_YAML: "the repository", EVAL_METRICS: "stage evaluate", EXAMPLES: "stage evaluate",
                SEGMENTER_METRICS: "stage train_segmenter"}
    missing = inputs.missing_inputs(expected)
    if missing:  # the plot definitions come from dvc.yaml: report it missing before reading it
        raise FileNotFoundError("missing input: " + "; ".join(missing))
    definitions = [without_switched_off_terms(d) for d in inputs.read_plot_definitions(DVC_YAML)]
    plotted = {Path(path): origin(path) for definition in definitions for path in definition.y}
    examples = {name: EXAMPLES / name for name in ("sr_grid.png", "sr_calibration.png", "sim2real_grid.png")}
    missing = inputs.missing_inputs(plotted | {path: "stage evaluate" for path in (*examples.values(), RELIABILITY)})
    if missing:
        raise FileNotFoundError("missing input: " + "; ".join(missing))

    metrics = schema.from_json(EVAL_METRICS.read_text(), EVAL_METRICS)
    segmenter = inputs.read_segmenter_scores(SEGMENTER_METRICS, SEGMENTER_SPLITS)
    pngs = {p.relative_to(EXAMPLES).as_posix(): inputs.read_png(p) for p in sorted(EXAMPLES.rglob("*.png"))}
    curves, charts = plot_figures(definitions)
    reliability = inputs.read_points(RELIABILITY, RELIABILITY_FIELDS)
    return render(context(metrics, segmenter, as_dict(params), pngs, curves, charts, reliability))


def write_report(params: Params) -> str:
    page = build_page(params)
    write_text(OUT, page)
    return f"wrote {OUT} ({len(page.encode()) / 1e6:.1f} MB)"


def main(argv: list[str] | None = None) -> int:
    return run_stage("report", DESCRIPTION, write_report, argv)


if __name__ == "__main__":
    sys.exit(main())
