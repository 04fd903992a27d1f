"""The report's tables as data, cells of plain text with a CSS class; src/templates/report.html.j2 renders them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from src.evaluation.labels import COMPARISONS, ROWS, arrow, label, meaning, verdict_text
from src.evaluation.schema import CALIBRATED_MODELS, CALIBRATION, Calibration, Comparison, Row

BACKBONE_ROLES = {
    "distribution_features": "features of the distribution metrics (KID, FD)",
    "perceptual_loss_sr": "perceptual loss, SRGAN",
    "perceptual_loss_cyclegan": "perceptual loss, CycleGAN",
    "judge_encoder": "encoder of the judge segmenter",
    "encoder_weights": "U-Net encoder, train_segmenter (its metrics.json)",
}
WEAK_WEIGHTS = ("random_init", "fallback")
VERDICT_CLASS = {True: "win", False: "loss"}


@dataclass(frozen=True)
class Cell:
    text: str
    kind: str = ""  # CSS class: num, code, win, loss, tie, warn


@dataclass(frozen=True)
class Table:
    id: str
    headers: list[str]
    rows: list[list[Cell]]
    row_classes: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (column, meaning) under the table


def fmt(value) -> str:
    """A number with 4 significant digits (fixed point between 1e-4 and 1e6), anything else as text."""
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
    return value if isinstance(value, str) else json.dumps(value)


def signed(value: float) -> str:
    return ("+" if value > 0 else "") + fmt(value)


def interval_text(item, sign: bool = False) -> str:
    """`value [low, high]`, with `± std` over seeds where there is one."""
    number = signed if sign else fmt
    spread = f" ± {fmt(item.std)}" if getattr(item, "std", None) is not None else ""
    return f"{number(item.value)}{spread} [{number(item.ci95_low)}, {number(item.ci95_high)}]"


def heading(key: str) -> str:
    return f"{label(key)} {arrow(key)}"


def estimate_table(table_id: str, section, path: str, keys: tuple[str, ...]) -> Table:
    """Rows = the methods or sets of the metrics section at `path` (labels.ROWS), columns = metrics,
    each cell `value [95 % interval]`."""
    body = [[Cell(label_)] + [Cell(interval_text(getattr(section, name)[k]), "num") for k in keys]
            for name, label_ in ROWS[path].items()]
    return Table(table_id, ["", *map(heading, keys)], body,
                 legend=[(heading(k), meaning(k)) for k in keys if meaning(k)])


def downstream_table(table_id: str, section, vs_classical, keys: tuple[str, ...]) -> Table:
    """The downstream table users decide by: `estimate_table` plus a last column saying whether each row beats
    the classical baseline (paired over slices and seeds; an interval of the difference that holds 0 is
    "not distinguishable from classical")."""
    table = estimate_table(table_id, section, "sim2real.downstream", keys)
    verdicts = {"sim_only": "", "classical": "(the baseline)", "real_oracle": ""}
    for row, comparison in vs_classical.model_dump().items():
        better = comparison["mean_foreground"]["better"]
        verdicts[row] = {True: "better than classical", False: "worse than classical"}.get(
            better, "not distinguishable from classical")
    rows = [cells + [Cell(verdicts[name], VERDICT_CLASS.get(_better_of(vs_classical, name), "tie"))]
            for cells, name in zip(table.rows, ROWS["sim2real.downstream"])]
    return Table(table_id, [*table.headers, "vs classical (mean foreground, paired)"], rows, legend=table.legend)


def _better_of(vs_classical, row: str):
    comparison = getattr(vs_classical, row, None)
    return None if comparison is None else comparison["mean_foreground"].better


def comparison_table(table_id: str, comparisons: dict[str, Comparison]) -> Table:
    """One row per (comparison, metric): A − B with its paired interval and what the interval says."""
    body = []
    for path, comparison in comparisons.items():
        a, b = COMPARISONS[path]
        for key, item in comparison.items():
            body.append([Cell(f"{a} − {b}"), Cell(heading(key)), Cell(interval_text(item, sign=True), "num"),
                         Cell(verdict_text(item.better, a, b), VERDICT_CLASS.get(item.better, "tie"))])
    return Table(table_id, ["comparison (A − B)", "metric", "difference [95 % interval]", "verdict"], body)


def labelled_estimates_table(table_id: str, row: Row, value_heading: str) -> Table:
    """One row per metric key: its label, the key, `value [interval]` (e.g. the uncertainty maps)."""
    body = [[Cell(label(k)), Cell(k, "code"), Cell(interval_text(item), "num")] for k, item in row.items()]
    return Table(table_id, ["map vs error", "key", value_heading], body)


def calibration_table(table_id: str, calibration: Calibration) -> Table:
    """One row per SR model: k, the coverage of k·σ on val and test, rank agreement and the bound's size."""
    body = [[Cell(ROWS["sr"][m])] + [Cell(interval_text(getattr(calibration, m)[k]), "num") for k in CALIBRATION]
            for m in CALIBRATED_MODELS]
    return Table(table_id, ["", *map(label, CALIBRATION)], body,
                 legend=[(label(k), meaning(k)) for k in CALIBRATION])


def key_value_table(table_id: str, items: dict[str, object]) -> Table:
    return Table(table_id, ["key", "value"], [[Cell(k, "code"), Cell(fmt(v), "num")] for k, v in items.items()])


def flatten(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a.b.c": leaf}."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def backbones_table(backbones: dict[str, str]) -> tuple[Table, list[tuple[str, str]]]:
    """Which pretrained weights fed which loss or metric, and the random-init or fallback ones among them."""
    weak = [(k, v) for k, v in backbones.items() if any(w in v.lower() for w in WEAK_WEIGHTS)]
    body = [[Cell(BACKBONE_ROLES.get(k, k)), Cell(k, "code"), Cell(v + (" ⚠" if (k, v) in weak else ""), "strong")]
            for k, v in backbones.items()]
    return Table("backbones", ["role", "key", "weights used"], body), weak


def segmenter_dice_table(dice: dict[str, dict[str, float]]) -> Table:
    """train_segmenter's validation Dice per split and class, and the real − sim gap."""
    labels = {"val_sim": "validation, sim slices", "val_real": "validation, real slices"}
    classes = list(dict.fromkeys(c for split in dice.values() for c in split if c != "mean_foreground"))
    classes.append("mean_foreground")
    body = [[Cell(labels.get(s, s))] + [Cell(fmt(values.get(c, float("nan"))), "num") for c in classes]
            for s, values in dice.items()]
    row_classes = [""] * len(body)
    if {"val_sim", "val_real"} <= set(dice):
        body.append([Cell("change (real − sim): the gap")] + [
            Cell(signed(dice["val_real"].get(c, math.nan) - dice["val_sim"].get(c, math.nan)), "num") for c in classes])
        row_classes.append("delta")
    return Table("segmenter-dice", ["", *map(heading, classes)], body, row_classes)


def params_tables(params: dict) -> list[Table]:
    """params as small two-column tables: top-level scalars, then one per section and sub-section."""
    sections = {"(top level)": {k: v for k, v in params.items() if not isinstance(v, dict)}}
    for name, section in params.items():
        if isinstance(section, dict):
            sections[name] = {k: v for k, v in section.items() if not isinstance(v, dict)}
            sections |= {f"{name}.{k}": v for k, v in section.items() if isinstance(v, dict)}
    return [Table(f"params-{name}", [name, ""], [[Cell(k), Cell(param_text(v))] for k, v in flatten(section).items()])
            for name, section in sections.items() if section]


def param_text(value) -> str:
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, float):
        return repr(value)  # params are shown exactly as given, not rounded
    return json.dumps(value)
