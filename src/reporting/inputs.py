"""The report's inputs, read with errors that name the file (and the stage that writes it)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


@dataclass(frozen=True)
class PlotDefinition:
    """One entry of dvc.yaml's top-level `plots:`: {title: {template, x, y: {file: field}}}."""
    title: str
    template: str
    x: str
    y: dict[str, str]


def read_plot_definitions(dvc_yaml: Path) -> list[PlotDefinition]:
    try:
        entries = yaml.safe_load(dvc_yaml.read_text()).get("plots", [])
    except (yaml.YAMLError, AttributeError) as err:
        raise ValueError(f"{dvc_yaml}: not a readable dvc.yaml ({err})") from None
    definitions = []
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{dvc_yaml}: plots: expected one {{title: definition}} per entry, got {entry!r}")
        (title, spec), = entry.items()
        if not isinstance(spec, dict) or not isinstance(spec.get("y"), dict) or "x" not in spec:
            raise ValueError(f"{dvc_yaml}: plots: {title!r} needs `x` and a `y` mapping of file -> field")
        definitions.append(PlotDefinition(title, spec.get("template", "linear"), spec["x"], dict(spec["y"])))
    return definitions


def missing_inputs(expected: dict[Path, str]) -> list[str]:
    """`path (from <origin>)` for each expected input that does not exist, or is an empty folder."""
    missing = []
    for path, origin in expected.items():
        if not path.exists() or (path.is_dir() and not any(p.is_file() for p in path.rglob("*"))):
            missing.append(f"{path} (from {origin})")
    return missing


def read_tsv(path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """A dvclive series (`timestamp, step, <field>` with a header) -> (steps, values)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or "step" not in rows[0] or field not in rows[0]:
        raise ValueError(f"{path}: expected a dvclive tsv with columns 'step' and {field!r}, got {rows[:1]}")
    step_col, value_col = rows[0].index("step"), rows[0].index(field)
    try:
        data = [(float(r[step_col]), float(r[value_col])) for r in rows[1:] if r]
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: unreadable row ({err})") from None
    array = np.array(data, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def read_points(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """A JSON list of records (the interval charts' data), each with `fields`."""
    points = read_json(path)
    if not isinstance(points, list) or not all(isinstance(p, dict) and set(fields) <= set(p) for p in points):
        raise ValueError(f"{path}: expected a JSON list of records with fields {list(fields)}")
    return points


def read_png(path: Path) -> tuple[bytes, tuple[int, int]]:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            image.verify()
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable PNG ({err})") from None
    return data, size


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


@dataclass(frozen=True)
class SegmenterScores:
    """train_segmenter's metrics.json: `<split>/dice/<class>` keys as {split: {class: Dice}}, and the rest."""
    dice: dict[str, dict[str, float]]
    encoder_weights: str
    other: dict[str, object]


def read_segmenter_scores(path: Path, splits: tuple[str, ...]) -> SegmenterScores:
    scores = read_json(path)
    if not isinstance(scores, dict) or "encoder_weights" not in scores:
        raise ValueError(f"{path}: missing key 'encoder_weights' (re-run train_segmenter)")
    dice: dict[str, dict[str, float]] = {}
    other = {}
    for key, value in scores.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[1] == "dice":
            dice.setdefault(parts[0], {})[parts[2]] = float(value)
        elif key != "encoder_weights":
            other[key] = value
    for split in splits:
        if "mean_foreground" not in dice.get(split, {}):
            raise ValueError(f"{path}: missing key '{split}/dice/mean_foreground' (re-run train_segmenter)")
    return SegmenterScores(dice, str(scores["encoder_weights"]), other)
