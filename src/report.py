"""DVC stage `report`: one self-contained HTML page with the params, metrics, loss curves and sample grids."""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from PIL import Image

EVAL_METRICS = Path("pipeline/evaluate/metrics.json")
EXAMPLES = Path("pipeline/evaluate/examples")
SEGMENTER_METRICS = Path("pipeline/train_segmenter/metrics.json")
# run name -> (figure title, dvclive plots folder)
TRAINING_RUNS = {
    "train_sr": ("train_sr: SRGAN super-resolution", Path("pipeline/train_sr/live/plots/metrics")),
    "train_cyclegan": ("train_cyclegan: CycleGAN sim-to-real", Path("pipeline/train_cyclegan/live/plots/metrics")),
}
OUT = Path("pipeline/report/report.html")

EXAMPLE_CAPTIONS = {
    "sr_grid.png": (
        "Super-resolution on test slices, one slice per row. Columns: LR input | naive upsampling (baseline) | "
        "PSNR model (L1 only) | GAN model | HR ground truth | |GAN − HR| error | TTA uncertainty of the GAN "
        "(spread of its outputs over test-time augmentations) | |GAN − PSNR model| (hallucination map: detail "
        "the GAN adds that the pixel-loss model does not). Bright error and bright uncertainty in the same "
        "places is what a useful uncertainty map looks like."
    ),
    "sim2real_grid.png": (
        "Sim-to-real on test slices, one slice per row. Columns: simulated input | translated by g_sim2real | "
        "a real slice (unpaired, for reference) | the judge segmenter's labels overlaid on the translated slice. "
        "The overlay should follow the anatomy of the simulated input: if it does not, the translation changed "
        "content, not just appearance."
    ),
}

# Metric key -> (column label, better direction, meaning). Keys with a feature space are handled in metric_column.
METRIC_COLUMNS = {
    "psnr_db": ("PSNR (dB)", "↑", "peak signal-to-noise ratio against the HR slice; pixel fidelity, rewards "
                "blurry averages"),
    "ssim": ("SSIM", "↑", "structural similarity with the HR slice (at most 1)"),
    "data_consistency_psnr_db": ("data-consistency PSNR (dB)", "↑", "PSNR between the output degraded again "
                                 "to LR and the LR input: does the output still explain what was measured?"),
    "swd": ("SWD", "↓", "multi-scale sliced Wasserstein distance between patch descriptors of these images and "
            "real ones (Karras et al. 2018, ×10³); realism of the image distribution, no pretrained network"),
    "fid": ("FID", "↓", "Fréchet Inception Distance (Heusel et al. 2017): Fréchet distance between Gaussians "
            "fitted to Inception-v3 pool features of these images and of real ones"),
    "kid": ("KID", "↓", "Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic kernel "
            "on Inception-v3 features, mean ± std over subsets; can be slightly negative"),
}
METRIC_ORDER = ["psnr_db", "ssim", "data_consistency_psnr_db", "swd", "kid", "fid"]
FEATURE_METRIC = re.compile(r"(fd|kid)_(.+)")

SR_ROWS = {"naive": "naive upsampling (baseline)", "psnr_model": "PSNR model (L1 only)",
           "gan_model": "GAN model (SRGAN)"}
REALISM_ROWS = {"raw_sim": "raw simulation (baseline)", "translated_sim": "translated sim (g_sim2real)"}
CONTENT_ROWS = {"judge_on_raw_sim": "judge on raw sim (reference)",
                "judge_on_translated_sim": "judge on translated sim"}
DOWNSTREAM_ROWS = {"sim_only": "trained on raw sim (baseline)", "translated_sim": "trained on translated sim",
                   "real_oracle": "trained on real labels (oracle)"}
UNCERTAINTY_ROWS = {
    "tta_spearman_psnr_model": "PSNR model: TTA uncertainty vs |error|",
    "tta_spearman_gan_model": "GAN model: TTA uncertainty vs |error|",
    "hallucination_spearman": "GAN model: |GAN − PSNR model| vs |error|",
}
BACKBONE_ROLES = {
    "distribution_features": "features of the distribution metrics (KID, FD)",
    "perceptual_loss_sr": "perceptual loss, SRGAN",
    "perceptual_loss_cyclegan": "perceptual loss, CycleGAN",
    "judge_encoder": "encoder of the judge segmenter",
    "encoder_weights": "U-Net encoder, train_segmenter (its metrics.json)",
}
WEAK_WEIGHTS = ("random_init", "fallback")
LOSS_GROUPS = {"g": "generator (g/)", "d": "discriminator (d/)", "d_real": "discriminator of the real domain (d_real/)",
               "d_sim": "discriminator of the sim domain (d_sim/)"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fafafa; margin: 0; line-height: 1.5; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; background: #fff;
       box-shadow: 0 0 12px rgba(0,0,0,.06); }
h1 { font-size: 1.9em; margin: .2em 0 .3em; }
h2 { font-size: 1.4em; margin-top: 2.2em; padding-bottom: .2em; border-bottom: 2px solid #e5e7eb; }
h3 { font-size: 1.1em; margin: 1.6em 0 .4em; }
nav { font-size: .92em; margin: .8em 0 1.2em; }
nav a { margin-right: 1em; color: #0b5cad; text-decoration: none; }
p.lead { color: #3b4148; }
table { border-collapse: collapse; margin: .5em 0 .4em; font-size: .93em; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 5px 12px; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; border-bottom: 2px solid #d0d7de; vertical-align: bottom; }
table.data td:first-child { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; }
tr.delta td { font-style: italic; color: #555; border-top: 1px solid #d0d7de; }
.caption, figcaption { color: #4b5563; font-size: .88em; max-width: 960px; }
dl.caption dt { font-weight: 600; display: inline; }
dl.caption dd { display: inline; margin: 0; }
dl.caption dd::after { content: ""; display: block; margin-bottom: .15em; }
.note { color: #6b7280; font-style: italic; }
.warning { background: #fff7e6; border: 1px solid #f0b429; border-left: 6px solid #f0b429;
           padding: 10px 16px; margin: 1em 0; border-radius: 4px; }
.warning strong { color: #8a5a00; }
.headline { font-size: 1.15em; background: #eef6ff; border-left: 6px solid #0b5cad; padding: 8px 14px;
            display: inline-block; border-radius: 4px; }
figure { margin: 1.2em 0 1.8em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; display: block; }
code { background: #f1f3f5; padding: 0 4px; border-radius: 3px; font-size: .92em; }
details summary { cursor: pointer; font-weight: 600; margin: .4em 0; }
.params { columns: 2 460px; column-gap: 28px; }
.params table { break-inside: avoid; width: 100%; font-size: .86em; margin-top: 0; table-layout: fixed; }
.params td { overflow-wrap: anywhere; }
.params td:first-child { width: 58%; }
.params th[colspan] { background: #e8eef5; }
.params td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""


def fmt(value) -> str:
    """A number with 4 significant digits (fixed point between 1e-3 and 1e6), anything else as text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        if -4 <= magnitude < 6:
            return f"{value:.{max(0, 3 - magnitude)}f}"
        return f"{value:.3e}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def esc(value) -> str:
    return html.escape(fmt(value))


def metric_column(key: str) -> tuple[str, str, str]:
    """(label, direction ↑/↓/'', meaning) of a metric key. Only `fid` is called FID: `fd_<space>` is an FD."""
    if key in METRIC_COLUMNS:
        return METRIC_COLUMNS[key]
    match = FEATURE_METRIC.fullmatch(key)
    if match:
        kind, space = match.groups()
        if kind == "fd":
            return (f"FD ({space} features)", "↓",
                    f"Fréchet distance between Gaussians fitted to {space} features of these images and of real "
                    f"ones; not comparable with published Inception-based scores")
        return (f"KID ({space} features)", "↓",
                f"kernel distance: unbiased MMD² with a cubic kernel on {space} features, mean ± std over "
                f"subsets; can be slightly negative")
    return key, "", ""


def row_label(key: str, labels: dict[str, str]) -> str:
    return labels.get(key, key)


def ordered(keys, preferred: list[str]) -> list[str]:
    """`keys` with the `preferred` ones first, in that order, then the rest in their own order."""
    keys = list(keys)
    return [k for k in preferred if k in keys] + [k for k in keys if k not in preferred]


def flatten(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a.b.c": leaf}."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def best_rows(values: dict[str, float], direction: str) -> set[str]:
    """Rows holding the best finite value of a column, when there are at least two to compare."""
    finite = {row: v for row, v in values.items() if is_number(v) and math.isfinite(v)}
    if direction not in ("↑", "↓") or len(finite) < 2:
        return set()
    target = max(finite.values()) if direction == "↑" else min(finite.values())
    return {row for row, v in finite.items() if v == target}


def html_table(table_id: str, headers: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    """Cells are HTML already: a plain string becomes <td>, a (html, css_class) pair a classed <td>."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="{c[1]}">{c[0]}</td>' if isinstance(c, tuple) else f"<td>{c}</td>" for c in row)
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="scroll"><table class="data" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def metric_table(table_id: str, section: dict, row_keys: list[str], labels: dict[str, str],
                 path: str) -> tuple[str, set[str]]:
    """Rows = models or baselines, columns = scalar metrics; `<kid>_std` is shown as ± beside its mean.

    Returns (html, dotted paths shown). Non-scalar values are left for the "other metrics" table.
    """
    rows = {r: {k: v for k, v in section[r].items() if is_number(v)} for r in row_keys}
    keys = ordered(dict.fromkeys(k for r in rows.values() for k in r), METRIC_ORDER)
    std_of = {k: f"{k}_std" for k in keys if f"{k}_std" in keys}
    columns = [k for k in keys if k not in std_of.values()]
    used = set()
    headers = ["", *(esc(metric_column(k)[0]) + ("&nbsp;" + metric_column(k)[1] if metric_column(k)[1] else "")
                     for k in columns)]
    best = {k: best_rows({r: rows[r].get(k) for r in row_keys}, metric_column(k)[1]) for k in columns}
    table_rows = []
    for r in row_keys:
        cells = [html.escape(row_label(r, labels))]
        for k in columns:
            if k not in rows[r]:
                cells.append(("–", "num"))
                continue
            text = esc(rows[r][k])
            used.add(f"{path}.{r}.{k}")
            if k in std_of and std_of[k] in rows[r]:
                text += f" ± {esc(rows[r][std_of[k]])}"
                used.add(f"{path}.{r}.{std_of[k]}")
            cells.append((text, "num best" if r in best[k] else "num"))
        table_rows.append(cells)
    legend = "".join(f"<dt>{esc(label)} {arrow}</dt><dd>: {html.escape(meaning)}</dd>"
                     for label, arrow, meaning in map(metric_column, columns) if meaning)
    caption = f'<dl class="caption">{legend}</dl>' if legend else ""
    return html_table(table_id, headers, table_rows) + caption, used


def dice_table(table_id: str, section: dict, row_keys: list[str], labels: dict[str, str], path: str,
               delta: tuple[str, str, str] | None = None) -> tuple[str, set[str]]:
    """Rows = conditions, columns = classes (mean_foreground last), Dice ↑; optional (a, b, label): a row b − a."""
    rows = {r: {k: v for k, v in section[r].items() if is_number(v)} for r in row_keys}
    classes = list(dict.fromkeys(k for r in rows.values() for k in r if k != "mean_foreground"))
    if any("mean_foreground" in r for r in rows.values()):
        classes.append("mean_foreground")
    headers = ["", *(("mean (foreground)" if c == "mean_foreground" else html.escape(c)) + "&nbsp;↑"
                     for c in classes)]
    best = {c: best_rows({r: rows[r].get(c) for r in row_keys}, "↑") for c in classes}
    used, table_rows, classes_of_rows = set(), [], []
    for r in row_keys:
        cells = [html.escape(row_label(r, labels))]
        for c in classes:
            if c in rows[r]:
                used.add(f"{path}.{r}.{c}")
                cells.append((esc(rows[r][c]), "num best" if r in best[c] else "num"))
            else:
                cells.append(("–", "num"))
        table_rows.append(cells)
        classes_of_rows.append("")
    if delta and delta[0] in rows and delta[1] in rows:
        a, b, label = delta
        cells = [html.escape(label)]
        for c in classes:
            ok = c in rows[a] and c in rows[b]
            cells.append((f"{rows[b][c] - rows[a][c]:+.4f}" if ok else "–", "num"))
        table_rows.append(cells)
        classes_of_rows.append("delta")
    return html_table(table_id, headers, table_rows, classes_of_rows), used


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def sub_dict(tree: dict, key: str):
    value = tree.get(key) if isinstance(tree, dict) else None  # optional section: absence is reported, not fatal
    return value if isinstance(value, dict) else None


def dict_rows(section: dict, preferred: list[str]) -> list[str]:
    return [k for k in ordered(section, preferred) if isinstance(section[k], dict)]


def backbones_section(backbones: dict | None, segmenter: dict) -> tuple[str, set[str]]:
    """Which pretrained weights fed which loss or metric; a warning box for random or fallback ones."""
    entries = dict(backbones or {})
    if "encoder_weights" in segmenter:
        entries["encoder_weights"] = segmenter["encoder_weights"]
    rows, weak = [], []
    for key, value in entries.items():
        role = BACKBONE_ROLES.get(key, key)
        text = fmt(value)
        is_weak = any(w in text.lower() for w in WEAK_WEIGHTS)
        if is_weak:
            weak.append(f"<li><code>{html.escape(key)}</code>: {html.escape(text)}</li>")
        cell = f"<strong>{html.escape(text)}</strong>" + (" ⚠" if is_weak else "")
        rows.append([html.escape(role), f"<code>{html.escape(key)}</code>", cell])
    parts = []
    if weak:
        parts.append(
            '<div class="warning" id="weights-warning"><strong>⚠ Some networks ran without their pretrained '
            'weights (random_init or fallback).</strong> Numbers computed with them are internally consistent '
            "(same features for every row of a table), but not comparable with published results, and a "
            "perceptual loss on a random network is only a weak texture prior. Affected:"
            f"<ul>{''.join(weak)}</ul>Provide the weight files through <code>params.yaml</code> "
            "<code>weights</code> (stage <code>weights</code>) and re-run the pipeline.</div>")
    if rows:
        parts.append(html_table("backbones", ["role", "key", "weights used"], rows))
    if backbones is None:
        parts.append(note("metrics.json has no \"backbones\" section: the weights used by the evaluation are unknown."))
    used = {f"backbones.{k}" for k in (backbones or {})}
    return "".join(parts), used


def sr_section(sr: dict | None, protocol: dict, grid: str) -> tuple[str, set[str]]:
    if sr is None:
        return note("metrics.json has no \"sr\" section: super-resolution results skipped.") + grid, set()
    parts, used = [], set()
    models = [k for k in dict_rows(sr, list(SR_ROWS)) if k != "uncertainty"]
    n = protocol.get("n_sr_test")
    on = f" on {fmt(n)} test slices" if n is not None else ""
    if models:
        table, shown = metric_table("sr-metrics", sr, models, SR_ROWS, "sr")
        parts.append(f"<h3>Image quality{on}</h3>"
                     f'<p class="caption">Baseline first. Bold: best value of each column. A GAN usually loses '
                     f"some PSNR/SSIM to the PSNR model while moving closer to the real image distribution "
                     f"(lower SWD/KID/FD): the perception–distortion trade-off.</p>{table}")
        used |= shown
    else:
        parts.append(note("metrics.json \"sr\" holds no model results."))
    uncertainty = sub_dict(sr, "uncertainty")
    if uncertainty is None:
        parts.append(note("metrics.json has no \"sr.uncertainty\" section: uncertainty results skipped."))
    else:
        keys = [k for k in ordered(uncertainty, list(UNCERTAINTY_ROWS)) if is_number(uncertainty[k])]
        rows = [[html.escape(row_label(k, UNCERTAINTY_ROWS)), f"<code>{html.escape(k)}</code>",
                 (esc(uncertainty[k]), "num")] for k in keys]
        used |= {f"sr.uncertainty.{k}" for k in keys}
        table = html_table("sr-uncertainty", ["map vs error", "key", "Spearman ρ ↑"], rows)
        parts.append("<h3>Uncertainty</h3>" + table
                     + '<p class="caption">Spearman rank correlation (−1 to 1) between an uncertainty map and the '
                     "actual absolute error. Higher is better: the map points at the pixels that are really wrong; "
                     "0 means it is uninformative.</p>")
    return "".join(parts) + grid, used


def sim2real_section(s2r: dict | None, protocol: dict, grid: str) -> tuple[str, set[str]]:
    if s2r is None:
        return note("metrics.json has no \"sim2real\" section: sim-to-real results skipped.") + grid, set()
    parts, used = [], set()
    n = protocol.get("n_sim2real_test")
    on = f" on {fmt(n)} test slices" if n is not None else ""

    realism = sub_dict(s2r, "realism")
    if realism is None:
        parts.append(note("metrics.json has no \"sim2real.realism\" section: skipped."))
    else:
        table, shown = metric_table("s2r-realism", realism, dict_rows(realism, list(REALISM_ROWS)), REALISM_ROWS,
                                    "sim2real.realism")
        parts.append(f"<h3>Realism{on}</h3><p class=\"caption\">Distance of each image set to real slices. "
                     f"Translation is worth something only where it beats the raw simulation.</p>{table}")
        used |= shown

    content = sub_dict(s2r, "content")
    if content is None:
        parts.append(note("metrics.json has no \"sim2real.content\" section: skipped."))
    else:
        table, shown = dice_table("s2r-content", content, dict_rows(content, list(CONTENT_ROWS)), CONTENT_ROWS,
                                  "sim2real.content",
                                  delta=("judge_on_raw_sim", "judge_on_translated_sim", "change (translated − raw)"))
        parts.append("<h3>Content preservation</h3><p class=\"caption\">Dice ↑ (0 to 1) of the frozen judge "
                     "segmenter against the simulation's own tissue labels, on raw and on translated sim slices. "
                     "A large drop means the translation changed anatomy, not just appearance.</p>" + table)
        used |= shown

    downstream = sub_dict(s2r, "downstream")
    if downstream is None:
        parts.append(note("metrics.json has no \"sim2real.downstream\" section: skipped."))
    else:
        table, shown = dice_table("s2r-downstream", downstream, dict_rows(downstream, list(DOWNSTREAM_ROWS)),
                                  DOWNSTREAM_ROWS, "sim2real.downstream")
        steps = protocol.get("downstream_steps")
        budget = f", each trained for {fmt(steps)} steps" if steps is not None else ""
        parts.append("<h3>Downstream value</h3><p class=\"caption\">Dice ↑ on real test slices of three segmenters "
                     f"with the same recipe{budget}, trained on raw sim, on translated sim, and on real labels "
                     "(oracle, an upper bound).</p>" + table)
        used |= shown
        gap = downstream.get("gap_closed_fraction")
        if is_number(gap):
            used.add("sim2real.downstream.gap_closed_fraction")
            parts.append(f'<p class="headline" id="gap-closed">Fraction of the sim-to-real gap closed: '
                         f"<strong>{esc(gap)}</strong></p><p class=\"caption\">(translated − raw sim) / "
                         "(oracle − raw sim), on mean foreground Dice. ↑: 1 = as good as training on real labels, "
                         "0 = no better than raw simulation, negative = worse.</p>")
    return "".join(parts) + grid, used


def segmenter_section(segmenter: dict) -> str:
    """train_segmenter's flat `<split>/dice/<class>` keys as a table; the rest as key/value rows."""
    dice, other = {}, {}
    for key, value in segmenter.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[1] == "dice" and is_number(value):
            dice.setdefault(parts[0], {})[parts[2]] = value
        elif key != "encoder_weights":
            other[key] = value
    labels = {"val_sim": "validation, sim slices", "val_real": "validation, real slices"}
    out = ['<p class="caption">The judge segmenter: a U-Net trained on simulated slices, frozen and used by the '
           "CycleGAN's semantic loss and by the content-preservation check. Dice ↑ (0 to 1); the sim − real "
           "difference is the sim-to-real gap the translation tries to close.</p>"]
    if dice:
        out.append(dice_table("segmenter-dice", dice, ordered(dice, list(labels)), labels, "segmenter",
                              delta=("val_sim", "val_real", "change (real − sim): the gap"))[0])
    if other:
        out.append(html_table("segmenter-other", ["key", "value"],
                              [[f"<code>{html.escape(k)}</code>", (esc(v), "num")] for k, v in other.items()]))
    return "".join(out)


def params_section(params: dict) -> str:
    """params.yaml as small two-column tables: top-level scalars, then one per section and per sub-section."""
    sections = {"(top level)": {k: v for k, v in params.items() if not isinstance(v, dict)}}
    for name, section in params.items():
        if isinstance(section, dict):
            sections[name] = {k: v for k, v in section.items() if not isinstance(v, dict)}
            sections |= {f"{name}.{k}": v for k, v in section.items() if isinstance(v, dict)}
    sections = {name: section for name, section in sections.items() if section}
    tables = []
    for name, section in sections.items():
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(param_text(v))}</td></tr>"
                       for k, v in flatten(section).items())
        tables.append(f'<table><thead><tr><th colspan="2">{html.escape(str(name))}</th></tr></thead>'
                      f"<tbody>{rows}</tbody></table>")
    return f'<div class="params" id="params">{"".join(tables)}</div>'


def param_text(value) -> str:
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, float):
        return repr(value)  # params are shown exactly as given, not rounded
    return json.dumps(value)


def other_metrics(metrics: dict, used: set[str]) -> str:
    rest = {k: v for k, v in flatten(metrics).items()
            if not any(k == u or k.startswith(u + ".") for u in used)}
    if not rest:
        return note("None: every value in metrics.json is shown above.")
    rows = [[f"<code>{html.escape(k)}</code>", (esc(v), "num")] for k, v in rest.items()]
    return ('<p class="caption">Values of pipeline/evaluate/metrics.json that no table above shows '
            "(new or unknown keys), by dotted path.</p>" + html_table("other-metrics", ["key", "value"], rows))


def read_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A dvclive series (`timestamp, step, <name>` with a header) -> (steps, values)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or "step" not in rows[0] or len(rows[0]) < 2:
        raise ValueError(f"{path}: expected a dvclive tsv with a header containing 'step', got {rows[:1]}")
    step_col = rows[0].index("step")
    try:
        data = [(float(r[step_col]), float(r[-1])) for r in rows[1:] if r]
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: unreadable row ({err})") from err
    array = np.array(data, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def read_run(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"g/pixel": (steps, values), ...}: the metric name is the file's path under `folder`."""
    return {p.relative_to(folder).with_suffix("").as_posix(): read_tsv(p) for p in sorted(folder.rglob("*.tsv"))}


def smoothing_window(n_points: int) -> int:
    """Moving-average length for a curve of n points: 1 (no smoothing) below 50 points."""
    return max(1, n_points // 25)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_run(title: str, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """One figure, one subplot per metric group (g/, d/, d_real/, d_sim/, ...), as PNG bytes."""
    groups: dict[str, dict] = {}
    for name, curve in series.items():
        groups.setdefault(name.split("/")[0] if "/" in name else "", {})[name] = curve
    names = ordered(groups, list(LOSS_GROUPS))
    ncols = 1 if len(names) == 1 else 2
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(11, 3.1 * nrows + 0.5), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, group in zip(axes.flat, names):
        curves = groups[group]
        for name, (steps, values) in curves.items():
            window = smoothing_window(len(values))
            if window > 1:
                (line,) = ax.plot(steps, values, lw=0.7, alpha=0.3)
                ax.plot(steps[window - 1:], moving_average(values, window), lw=1.6, color=line.get_color(), label=name)
            else:
                ax.plot(steps, values, lw=1.4, marker="." if len(values) < 10 else None, label=name)
        finite = [v[np.isfinite(v)] for _, v in curves.values()]
        positive = all(len(v) and (v > 0).all() for v in finite)
        medians = [float(np.median(v)) for v in finite if len(v)]
        log = positive and len(medians) > 1 and max(medians) / min(medians) > 30
        if log:
            ax.set_yscale("log")
        ax.set_title(LOSS_GROUPS.get(group, f"{group}/" if group else "other") + (" (log scale)" if log else ""),
                     fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(data: bytes, size: tuple[int, int], alt: str, caption: str, figure_id: str) -> str:
    width, height = size
    return (f'<figure id="{html.escape(figure_id)}"><img src="{png_data_uri(data)}" width="{width}" '
            f'height="{height}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def read_png(path: Path) -> tuple[bytes, tuple[int, int]]:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.verify()
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable PNG ({err})") from err
    return data, size


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(value).__name__}")
    return value


def read_yaml(path: Path) -> dict:
    try:
        value = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return value


def check_inputs(params_path: Path) -> None:
    """Every input present, or one error naming each missing file and the stage that writes it."""
    expected = {params_path: "the pipeline's parameters", EVAL_METRICS: "stage evaluate",
                EXAMPLES: "stage evaluate", SEGMENTER_METRICS: "stage train_segmenter"}
    expected |= {folder: f"stage {run}" for run, (_, folder) in TRAINING_RUNS.items()}
    missing = [f"{path} (from {origin})" for path, origin in expected.items() if not path.exists()]
    if EXAMPLES.is_dir() and not any(EXAMPLES.rglob("*.png")):
        missing.append(f"{EXAMPLES}/*.png (from stage evaluate)")
    missing += [f"{folder}/**/*.tsv (from stage {run})" for run, (_, folder) in TRAINING_RUNS.items()
                if folder.is_dir() and not any(folder.rglob("*.tsv"))]
    if missing:
        raise FileNotFoundError("missing input: " + "; ".join(missing))


def build_report(params_path: Path) -> str:
    """Read every input (relative to the cwd) and return the report's HTML."""
    check_inputs(params_path)
    params = read_yaml(params_path)
    metrics = read_json(EVAL_METRICS)
    segmenter = read_json(SEGMENTER_METRICS)
    examples = {p.relative_to(EXAMPLES).as_posix(): read_png(p) for p in sorted(EXAMPLES.rglob("*.png"))}
    runs = {run: (title, read_run(folder)) for run, (title, folder) in TRAINING_RUNS.items()}

    protocol = sub_dict(metrics, "protocol") or {}
    grids = {name: figure(*examples[name], name, caption, name.replace(".", "-"))
             for name, caption in EXAMPLE_CAPTIONS.items() if name in examples}
    missing_grid = {name: note(f"{EXAMPLES / name} not found: grid skipped.") for name in EXAMPLE_CAPTIONS}
    backbones_html, used_backbones = backbones_section(sub_dict(metrics, "backbones"), segmenter)
    sr_html, used_sr = sr_section(sub_dict(metrics, "sr"), protocol,
                                  grids.get("sr_grid.png", missing_grid["sr_grid.png"]))
    s2r_html, used_s2r = sim2real_section(sub_dict(metrics, "sim2real"), protocol,
                                          grids.get("sim2real_grid.png", missing_grid["sim2real_grid.png"]))
    used = used_backbones | used_sr | used_s2r | {"protocol", "wall_time_s"}

    curves = []
    for run, (title, series) in runs.items():
        series = {name: curve for name, curve in series.items() if len(curve[1])}
        if not series:
            curves.append(note(f"{TRAINING_RUNS[run][1]}: the tsv files hold no rows yet."))
            continue
        png = plot_run(title, series)
        smoothed = any(smoothing_window(len(values)) > 1 for _, values in series.values())
        with Image.open(io.BytesIO(png)) as image:
            size = image.size
        curves.append(figure(png, size, f"{run} loss curves", f"{title}: logged training statistics by step "
                             f"(from {TRAINING_RUNS[run][1]})."
                             + (" Faint: logged values; solid: moving average." if smoothed else ""),
                             f"curves-{run}"))
    extra_images = [figure(data, size, name, f"{name} (pipeline/evaluate/examples)", f"example-{name}")
                    for name, (data, size) in examples.items() if name not in EXAMPLE_CAPTIONS]

    protocol_rows = [[f"<code>{html.escape(k)}</code>", (esc(v), "num")] for k, v in flatten(protocol).items()]
    if is_number(metrics.get("wall_time_s")):
        protocol_rows.append(["<code>wall_time_s</code> (evaluate stage)", (esc(metrics["wall_time_s"]), "num")])
    protocol_html = (html_table("protocol", ["key", "value"], protocol_rows) if protocol_rows
                     else note("metrics.json has no \"protocol\" section."))

    sections = [
        ("weights", "Backbones and weights", backbones_html),
        ("sr", "Super-resolution (SRGAN)", sr_html),
        ("sim2real", "Sim-to-real (CycleGAN)", s2r_html),
        ("segmenter", "Judge segmenter (train_segmenter)", segmenter_section(segmenter)),
        ("curves", "Training curves", "".join(curves)),
    ]
    if extra_images:
        sections.append(("examples", "More examples", "".join(extra_images)))
    sections += [
        ("other", "Other metrics", other_metrics(metrics, used)),
        ("protocol-section", "Evaluation protocol", protocol_html),
        ("params-section", "Parameters (params.yaml)",
         f"<details open><summary>{html.escape(str(params_path))}</summary>{params_section(params)}</details>"),
    ]
    split = f"All numbers are on the {html.escape(fmt(protocol['split']))} split. " if "split" in protocol else ""
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MRI GANs: evaluation report</title>
<style>{CSS}</style></head>
<body><main>
<h1>MRI GANs: evaluation report</h1>
<p class="lead"><strong>How to read this.</strong> Two tasks on MRI slices: super-resolution (SRGAN, against
naive upsampling and a pixel-loss model) and sim-to-real translation (CycleGAN, against the raw simulation).
{split}Every column says whether higher (↑) or lower (↓) is better; the
best value of each column is bold. Baselines sit beside the models: a model earns its place only where it
beats them. Fidelity metrics (PSNR, SSIM) compare each output with its own ground truth; distribution metrics
(SWD, KID, FD) compare whole image sets with real ones and are noisy on small test sets. Check the backbone
section first: metrics computed with random or fallback networks are not comparable with published numbers.</p>
<nav>{nav}</nav>
{body}
</main></body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.report",
        description="Build the pipeline report. Reads params.yaml, pipeline/evaluate/metrics.json, "
        "pipeline/evaluate/examples/**/*.png, pipeline/train_sr/live/plots/metrics/**/*.tsv, "
        "pipeline/train_cyclegan/live/plots/metrics/**/*.tsv and pipeline/train_segmenter/metrics.json "
        "(paths relative to the current directory). Writes one self-contained HTML file, "
        f"{OUT}: metric tables with baselines, backbone weights, loss curves and sample grids, "
        "all images embedded. A missing input is an error (exit 1) and nothing is written.",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        page = build_report(Path(args.params))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(f".{OUT.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, OUT)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {OUT} ({len(page.encode()) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
