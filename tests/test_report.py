"""Tests for the `report` stage: a fake pipeline tree in, one self-contained HTML page out, checked in headless Chromium."""

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from src import report
from src.evaluation import plots, schema
from src.report import main
from src.reporting.tables import fmt

REPO = Path(__file__).resolve().parents[1]
REPORT = Path("pipeline/report/report.html")
METRICS = Path("pipeline/evaluate/metrics.json")
FALLBACK_FEATURES = "judge_unet_encoder (fallback: FID Inception weights unavailable)"
CLASSES = ["background", "CSF", "GM", "WM"]


def estimate(value: float, std=None) -> dict:
    """An estimate whose interval is value x [0.9, 1.1]: `27.12 [24.41, 29.84]` for 27.1234."""
    low, high = sorted((0.9 * value, 1.1 * value))
    return {"value": value, "ci95_low": low, "ci95_high": high, "n": 14, "std": std}


def fake_calibration() -> dict:
    """sr.calibration: the fit's protocol and one row per model (k, coverages, rho, AUROC, bound and error in model units)."""
    rows = {m: {k: estimate(v) for k, v in zip(schema.CALIBRATION, values)} for m, values in (
        ("psnr_model", (8.69451, 0.900012, 0.873421, 0.224912, 0.712345, 0.180912, 0.0822871)),
        ("gan_model", (8.55743, 0.900034, 0.874812, 0.233112, 0.705678, 0.181134, 0.0821987)))}
    assert all(len(row) == len(schema.CALIBRATION) for row in rows.values())
    return {"target_coverage": 0.9, "calibration_split": "val", "n_val": 14, "foreground": "HR > -1",
            "sigma": "TTA std", "sigma_floor": 1.0e-4, **rows}


def difference(value: float, low: float, high: float, better) -> dict:
    return {"value": value, "ci95_low": low, "ci95_high": high, "n": 14, "better": better}


def fake_metrics(distribution: str = "judge", weak: bool = True, kid_whole_set: bool = True) -> dict:
    """A metrics.json tree per the evaluate schema: `distribution` 'judge' gives fd_/kid_judge_unet_encoder, else fid/kid."""
    space = "judge_unet_encoder" if distribution == "judge" else "inception_fid"
    kid, fd = schema.distance_keys(space)
    sr_values = {"naive": (27.1234, 0.81234, 99.01234, 12.3456, 0.0212345, 3.21234),
                 "psnr_model": (29.8765, 0.87654, 45.6789, 8.76543, 0.0112345, 2.34567),
                 "gan_model": (28.5432, 0.84321, 41.2345, 4.32109, 0.00412345, 1.23456)}
    keys = ("psnr_db", "ssim", "data_consistency_psnr_db", "swd", kid, fd)
    dice = lambda a, b, c, std=None: {"CSF": estimate(a, std), "GM": estimate(b, std), "WM": estimate(c, std),  # noqa: E731
                                      "mean_foreground": estimate(round((a + b + c) / 3, 6), std)}
    downstream = {"sim_only": dice(0.31234, 0.41234, 0.51234, 0.0123), "classical": dice(0.40111, 0.50111, 0.60111, 0.02),
                  "randomized": dice(0.30123, 0.40123, 0.50123, 0.03),
                  "translated_sim": dice(0.38765, 0.46543, 0.55432, 0.0234),
                  "translated_classical": dice(0.45678, 0.55678, 0.65678, 0.0156),
                  "real_oracle": dice(0.61234, 0.70123, 0.80123, 0.0345)}
    for row, gap in zip(downstream, (0.0, 0.55, -0.03, 0.412345, 0.76543, 1.0)):
        downstream[row]["gap_closed_fraction"] = estimate(gap)
    distances = lambda a, b, c: {"swd": estimate(a), kid: estimate(b), fd: estimate(c)}  # noqa: E731
    fidelity = lambda a, b, c: {"psnr_db": estimate(a), "ssim": estimate(b), "mae": estimate(c)}  # noqa: E731
    versus = lambda v, lo, hi, better: {"mean_foreground": difference(v, lo, hi, better)}  # noqa: E731
    return {
        "protocol": {
            "split": "test", "seed": 42, "n_sr_test": 14, "n_sim2real_test": 14, "crop_border": 4, "data_range": 2.0,
            "value_range": [-1.0, 1.0], "class_names": CLASSES, "feature_space": space,
            "swd": {"descriptors_per_image": 128, "directions": 512},
            "kid": {"subsets": 100, "subset_size": 32 if kid_whole_set else 8,
                    "effective_subset_size": 14 if kid_whole_set else 8, "subset_is_whole_set": kid_whole_set},
            "bootstrap": {"method": "percentile", "level": 0.95, "resamples": 1000, "set_resamples": 200, "seed": 42,
                          "pairing": "paired", "set_level": "shifted", "dice": "pooled", "downstream": "two-level",
                          "decision": "rule"},
            "downstream": {"steps": 250, "seeds": [42, 43, 44], "steps_per_segmenter": {r: 250 for r in downstream},
                           "segmenter_recipe": {"encoder": "resnet18", "steps": 250}},
            "uncertainty": "per slice",
        },
        "backbones": {
            "distribution_features": FALLBACK_FEATURES if distribution == "judge" else "inception_fid",
            "perceptual_loss_sr": "vgg19_random_init" if weak else "vgg19_imagenet",
            "perceptual_loss_cyclegan": "vgg19_imagenet",
            "judge_encoder": "resnet18_random_init" if weak else "resnet18_imagenet",
        },
        "sr": {**{row: {k: estimate(v) for k, v in zip(keys, values)} for row, values in sr_values.items()},
               "uncertainty": {"tta_spearman_psnr_model": estimate(0.412345), "tta_spearman_gan_model": estimate(0.351234),
                               "hallucination_spearman": estimate(0.298765)},
               "calibration": fake_calibration(),
               "psnr_model_vs_naive": {"psnr_db": difference(2.7531, 2.1, 3.3, True),
                                       "ssim": difference(0.0642, 0.03, 0.09, True)},
               "gan_vs_psnr_model": {"psnr_db": difference(-0.11, -0.3, 0.08, "indistinguishable"),
                                     "ssim": difference(-0.0333, -0.05, -0.01, False),
                                     "swd": difference(-4.4443, -6.0, -2.5, True)}},
        "sim2real": {
            "realism": {"raw_sim": distances(25.4321, 0.0876543, 9.87654), "classical": distances(14.321, 0.0345, 5.4321),
                        "translated_sim": distances(11.2233, 0.0234567, 4.56789),
                        "translated_classical": distances(9.8765, 0.0198765, 3.9876)},
            "fidelity": {"raw_sim": fidelity(6.8123, 0.31234, 0.61234), "classical": fidelity(11.2345, 0.45678, 0.39876),
                         "translated_sim": fidelity(17.8901, 0.71234, 0.15432),
                         "translated_classical": fidelity(16.5432, 0.68765, 0.17654)},
            "fidelity_vs_raw_sim": {row: {"psnr_db": difference(5.0, 3.0, 7.0, True),
                                          "ssim": difference(0.1, 0.05, 0.2, True),
                                          "mae": difference(-0.2, -0.3, -0.1, True)}
                                    for row in schema.FIDELITY_VS_RAW_SIM_ROWS},
            "fidelity_vs_classical": {"translated_sim": {"psnr_db": difference(6.6556, 5.1, 8.2, True),
                                                         "ssim": difference(0.2556, 0.2, 0.3, True),
                                                         "mae": difference(-0.2444, -0.3, -0.2, True)},
                                      "translated_classical": {"psnr_db": difference(5.3087, 3.9, 6.7, True),
                                                               "ssim": difference(0.2309, 0.18, 0.28, True),
                                                               "mae": difference(-0.2222, -0.28, -0.16, True)}},
            "content": {"judge_on_raw_sim": dice(0.51234, 0.61234, 0.71234),
                        "judge_on_classical": dice(0.50123, 0.60123, 0.70123),
                        "judge_on_translated_sim": dice(0.48766, 0.59876, 0.69876),
                        "judge_on_translated_classical": dice(0.49876, 0.60987, 0.70987),
                        "judge_on_real": dice(0.52345, 0.62345, 0.72345)},
            "translated_vs_raw_sim": {"swd": difference(-14.2, -20.0, -8.0, True),
                                      "judge_dice_mean_foreground": difference(-0.0232, -0.05, 0.004, "indistinguishable")},
            "translated_classical_vs_classical": {"swd": difference(-4.4, -6.0, -2.0, True),
                                                  "judge_dice_mean_foreground": difference(0.002, -0.01, 0.01,
                                                                                           "indistinguishable")},
            "downstream": downstream,
            "downstream_vs_sim_only": {"classical": versus(0.09, 0.03, 0.15, True),
                                       "randomized": versus(-0.01, -0.05, 0.03, "indistinguishable"),
                                       "translated_sim": versus(0.0607, -0.01, 0.12, "indistinguishable"),
                                       "translated_classical": versus(0.145, 0.09, 0.2, True),
                                       "real_oracle": versus(0.2931, 0.2, 0.38, True)},
            "downstream_vs_randomized": {"translated_sim": versus(0.07, 0.01, 0.13, True),
                                         "translated_classical": versus(0.155, 0.1, 0.2, True)},
            "downstream_vs_classical": {"randomized": versus(-0.1, -0.15, -0.05, False),
                                        "translated_sim": versus(-0.03, -0.08, 0.02, "indistinguishable"),
                                        "translated_classical": versus(0.055, 0.01, 0.1, True)},
        },
        "wall_time_s": 123.0,
    }


def write_metrics(root: Path, tree: dict) -> None:
    """metrics.json flat on disk, as evaluate writes it, and the interval charts' data derived from it."""
    metrics = schema.Metrics.model_validate(tree)
    evaluate = root / "pipeline/evaluate"
    (evaluate / "plots").mkdir(parents=True, exist_ok=True)
    (evaluate / "metrics.json").write_text(schema.to_json(metrics))
    (evaluate / "plots/estimates.json").write_text(plots.to_json(plots.estimate_points(metrics)))
    (evaluate / "plots/differences.json").write_text(plots.to_json(plots.difference_points(metrics)))


def write_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = (127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 10, (height, width))).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.astype(np.uint8)).save(path)


def write_tsv(path: Path, name: str, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{1700000000000 + i}\t{10 * i}\t{float(v)!r}" for i, v in enumerate(values)]
    lines = ["timestamp\tstep\t" + name, *rows]
    path.write_text("\n".join(lines) + "\n")


def make_tree(root: Path, metrics: dict, tile: int = 16) -> None:
    """A pipeline tree as the upstream stages leave it, with the repository's params.yaml and dvc.yaml."""
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    write_metrics(root, metrics)
    evaluate = root / "pipeline/evaluate"
    write_png(evaluate / "examples/sr_grid.png", 8 * tile, 3 * tile, seed=1)
    write_png(evaluate / "examples/sr_calibration.png", 5 * tile, 3 * tile, seed=4)
    (evaluate / "plots/reliability.json").write_text(plots.to_json([
        {"method": method, "bin": b + 1, "predicted": 0.05 * (b + 1), "observed_quantile": 0.1 + 0.02 * b,
         "observed_mean": 0.05 + 0.01 * b, "coverage": 0.75 + 0.025 * b, "count": 100}
        for method in ("PSNR model (L1 only)", "GAN model (SRGAN)") for b in range(10)]))
    write_png(evaluate / "examples/sim2real_grid.png", 5 * tile, 3 * tile, seed=2)
    write_png(evaluate / "examples/extra_panel.png", 2 * tile, tile, seed=3)
    steps = np.arange(60)
    write_tsv(root / "pipeline/train_sr_psnr/live/plots/metrics/g/pixel.tsv", "pixel", 0.3 * np.exp(-steps / 20) + 0.1)
    sr = root / "pipeline/train_sr/live/plots/metrics"
    write_tsv(sr / "g/pixel.tsv", "pixel", 0.2 * np.exp(-steps / 20) + 0.02)
    write_tsv(sr / "g/adv.tsv", "adv", 0.7 + 0.1 * np.sin(steps))
    write_tsv(sr / "d/adv.tsv", "adv", 1.3 - 0.1 * np.sin(steps))
    write_tsv(sr / "d/real_sign.tsv", "real_sign", np.linspace(0, 0.6, 60))
    cyclegan = root / "pipeline/train_cyclegan/classical/live/plots/metrics"
    write_tsv(cyclegan / "g/cycle.tsv", "cycle", [1.0, 0.8, 0.6, 0.5, 0.45])
    write_tsv(cyclegan / "g/adv.tsv", "adv", [0.5, 0.4, 0.45, 0.42, 0.4])
    write_tsv(cyclegan / "d_real/adv.tsv", "adv", [0.3, 0.25, 0.24, 0.22, 0.2])
    write_tsv(cyclegan / "d_real/real_sign.tsv", "real_sign", [0.0, 0.1, 0.2, 0.25, 0.3])
    write_tsv(cyclegan / "d_sim/adv.tsv", "adv", [0.3, 0.26, 0.25, 0.21, 0.21])  # logged, but in no dvc.yaml plot
    segmenter = root / "pipeline/train_segmenter"
    segmenter.mkdir(parents=True)
    (segmenter / "metrics.json").write_text(json.dumps({
        "encoder_weights": "imagenet", "train/final_loss": 0.3456,
        "val_sim/dice/CSF": 0.81234, "val_sim/dice/GM": 0.85432, "val_sim/dice/WM": 0.90123,
        "val_sim/dice/mean_foreground": 0.85596,
        "val_real/dice/CSF": 0.55556, "val_real/dice/GM": 0.66666, "val_real/dice/WM": 0.77777,
        "val_real/dice/mean_foreground": 0.66666, "wall_time_s": 12.5}))


class Page(HTMLParser):
    """Tables by id (rows of cell texts), <img> sources, and every src/href."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.images, self.refs, self.ids = {}, [], [], set()
        self._table, self._row, self._cell = None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"anonymous-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def build(tmp_path, monkeypatch, metrics: dict) -> tuple[str, Page]:
    make_tree(tmp_path, metrics)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    text = (tmp_path / REPORT).read_text(encoding="utf-8")
    return text, Page(text)


def row(table: list[list[str]], label: str) -> list[str]:
    matches = [r for r in table if r and r[0] == label]
    assert len(matches) == 1, f"no single row {label!r} in {table}"
    return matches[0]


def test_fmt_four_significant_digits():
    assert [fmt(v) for v in (30.12345, 0.851234, 99.0, 0.0123456, 12345.6, 1.5e-5, 0.0)] == \
        ["30.12", "0.8512", "99.00", "0.01235", "12346", "1.500e-05", "0"]
    assert [fmt(v) for v in (42, True, float("nan"), float("inf"), "text")] == ["42", "true", "NaN", "∞", "text"]


def test_every_table_shows_values_with_their_intervals(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics("judge"))
    sr = page.tables["sr-metrics"]
    assert sr[0] == ["", "PSNR (dB) ↑", "SSIM ↑", "data-consistency PSNR (dB) ↑", "SWD ↓",
                     "KID (judge_unet_encoder features) ↓", "FD (judge_unet_encoder features) ↓"]
    assert [r[0] for r in sr[1:]] == ["naive upsampling (baseline)", "PSNR model (L1 only)", "GAN model (SRGAN)"]
    assert row(sr, "naive upsampling (baseline)")[1:] == [
        "27.12 [24.41, 29.84]", "0.8123 [0.7311, 0.8936]", "99.01 [89.11, 108.9]", "12.35 [11.11, 13.58]",
        "0.02123 [0.01911, 0.02336]", "3.212 [2.891, 3.534]"]
    assert not any("±" in cell for r in sr for cell in r), "no subset std beside KID"
    assert row(page.tables["sr-uncertainty"], "GAN model: TTA uncertainty vs |error|")[2] == "0.3512 [0.3161, 0.3864]"
    calibration = page.tables["sr-calibration"]
    assert calibration[0] == ["", "k", "coverage, val", "coverage, test (target 0.90)", "Spearman ρ, foreground",
                              "error detection AUROC", "mean bound k·σ", "mean |error|"]
    assert row(calibration, "PSNR model (L1 only)")[1:4] == ["8.695 [7.825, 9.564]", "0.9000 [0.8100, 0.9900]",
                                                            "0.8734 [0.7861, 0.9608]"]
    assert {"sr-reliability", "sr_calibration-png", "sr-calibrated"} <= page.ids

    realism = page.tables["s2r-realism"]
    assert row(realism, "CycleGAN on raw sim")[1:] == ["11.22 [10.10, 12.35]", "0.02346 [0.02111, 0.02580]",
                                                             "4.568 [4.111, 5.025]"]
    fidelity = page.tables["s2r-fidelity"]
    assert fidelity[0] == ["", "PSNR (dB) ↑", "SSIM ↑", "MAE ↓"]
    assert row(fidelity, "CycleGAN on raw sim")[1:] == ["17.89 [16.10, 19.68]", "0.7123 [0.6411, 0.7836]",
                                                        "0.1543 [0.1389, 0.1698]"]
    comparisons = page.tables["s2r-comparisons"]
    assert ["CycleGAN(raw sim) − classical", "MAE ↓", "-0.2444 [-0.3000, -0.2000]"] == \
        [c for c in next(r for r in comparisons if r[0] == "CycleGAN(raw sim) − classical" and r[1] == "MAE ↓")[:3]]
    content = page.tables["s2r-content"]
    assert content[0] == ["", "CSF ↑", "GM ↑", "WM ↑", "mean (foreground) ↑"]
    assert row(content, "judge on CycleGAN(raw sim)")[1] == "0.4877 [0.4389, 0.5364]"
    downstream = page.tables["s2r-downstream"]
    assert downstream[0][-2:] == ["gap closed ↑", "vs classical (mean foreground, paired)"]
    assert [r[0] for r in downstream[1:]] == [
        "trained on raw sim (baseline)", "trained on classical (blur + histogram matching)",
        "trained on SynthSeg-style randomisation", "trained on CycleGAN(raw sim)", "trained on CycleGAN(classical)",
        "trained on real labels (oracle)"]
    assert row(downstream, "trained on raw sim (baseline)")[1] == "0.3123 ± 0.01230 [0.2811, 0.3436]"
    assert row(downstream, "trained on CycleGAN(raw sim)")[-2] == "0.4123 [0.3711, 0.4536]"
    # The paired verdict against the classical baseline, per row.
    assert [r[-1] for r in downstream[1:]] == ["", "(the baseline)", "worse than classical",
                                               "not distinguishable from classical", "better than classical", ""]
    assert "steps_per_segmenter" not in text.split('id="protocol"')[0], "the budget belongs to the protocol"
    assert "0.7654 [0.6889, 0.8420]" in re.sub(r"<[^>]+>", "", text.split('id="gap-closed"')[1])
    assert row(page.tables["segmenter-dice"], "validation, real slices")[1] == "0.5556"
    assert ["split", "test"] in page.tables["protocol"]
    assert ["downstream.steps_per_segmenter.sim_only", "250"] in page.tables["protocol"]


def test_a_difference_whose_interval_contains_zero_is_not_a_win(tmp_path, monkeypatch):
    _, page = build(tmp_path, monkeypatch, fake_metrics())
    sr = page.tables["sr-comparisons"]
    assert sr[0] == ["comparison (A − B)", "metric", "difference [95 % interval]", "verdict"]
    by_metric = {(r[0], r[1]): r[2:] for r in sr[1:]}
    assert by_metric[("GAN model − PSNR model", "PSNR (dB) ↑")] == ["-0.1100 [-0.3000, +0.08000]", "not distinguishable"]
    assert by_metric[("GAN model − PSNR model", "SSIM ↑")][1] == "PSNR model better"
    assert by_metric[("GAN model − PSNR model", "SWD ↓")][1] == "GAN model better"
    assert by_metric[("PSNR model − naive upsampling", "PSNR (dB) ↑")] == ["+2.753 [+2.100, +3.300]", "PSNR model better"]
    s2r = {(r[0], r[1]): r[3] for r in page.tables["s2r-comparisons"][1:]}
    assert s2r[("CycleGAN(raw sim) − raw sim", "judge Dice (mean foreground) ↑")] == "not distinguishable"
    assert s2r[("trained on CycleGAN(raw sim) − trained on raw sim", "mean (foreground) ↑")] == "not distinguishable"
    assert s2r[("trained on CycleGAN(classical) − trained on classical", "mean (foreground) ↑")] == \
        "trained on CycleGAN(classical) better"
    assert s2r[("trained on real labels − trained on raw sim", "mean (foreground) ↑")] == "trained on real labels better"


def test_small_sample_notes(tmp_path, monkeypatch):
    text, _ = build(tmp_path, monkeypatch, fake_metrics())
    notes = " ".join(html.unescape(re.sub(r"<[^>]+>", "", text.split('id="small-n"')[1].split("</ul>")[0])).split())
    assert "comparable only between runs with equal n" in notes
    assert "n = 14 images per set" in notes
    assert "all 100 KID subsets are the same set and there is no spread over subsets to print" in notes
    assert json.loads((tmp_path / METRICS).read_text())["sr"]["naive"]["swd_n"] == 14


def test_kid_with_real_subsets_is_described_as_such(tmp_path, monkeypatch):
    text, _ = build(tmp_path, monkeypatch, fake_metrics(kid_whole_set=False))
    assert "the mean over 100 subsets of 8 images" in text and "same set" not in text


def test_fd_of_other_features_is_never_called_fid(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics("judge"))
    assert "FD (judge_unet_encoder features)" in text
    # The only FID on the page is inside the backbone's own description of why Inception was not used.
    words = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # base64 can spell anything
    assert "FID" not in words.replace(FALLBACK_FEATURES, "")
    assert not any("FID" in cell for r in page.tables["sr-metrics"] + page.tables["s2r-realism"] for cell in r)


def test_fid_key_is_called_fid(tmp_path, monkeypatch):
    _, page = build(tmp_path, monkeypatch, fake_metrics("inception", weak=False))
    assert page.tables["sr-metrics"][0][-2:] == ["KID ↓", "FID ↓"]
    assert page.tables["s2r-realism"][0][1:] == ["SWD ↓", "KID ↓", "FID ↓"]
    assert "weights-warning" not in page.ids


def test_warning_box_when_a_backbone_is_random_init(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics("judge", weak=True))
    assert "weights-warning" in page.ids
    warning = re.search(r'<div class="warning" id="weights-warning">(.*?)</div>', text, re.S).group(1)
    assert "vgg19_random_init" in warning and "resnet18_random_init" in warning and "fallback" in warning
    assert row(page.tables["backbones"], "perceptual loss, SRGAN")[2].startswith("vgg19_random_init")


def test_text_from_the_inputs_is_escaped(tmp_path, monkeypatch):
    metrics = fake_metrics()
    metrics["backbones"]["perceptual_loss_sr"] = "<script>alert(1)</script>"
    text, page = build(tmp_path, monkeypatch, metrics)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert row(page.tables["backbones"], "perceptual loss, SRGAN")[2] == "<script>alert(1)</script>"


def test_report_is_self_contained(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics())
    assert not [ref for ref in page.refs if re.match(r"\s*(https?:)?//", ref)]
    assert not re.search(r"<(script|link|iframe)\b", text) and "@import" not in text and "url(" not in text
    # four example PNGs, the SR reliability plot, one figure per dvc.yaml plot definition (curves, interval charts)
    definitions = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    assert len(definitions) == 5
    assert len(page.images) == 5 + len(definitions)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert {"sr_grid-png", "sim2real_grid-png", "example-extra_panel.png", "plot-0-sr-losses",
            "plot-3-evaluation-with-95-intervals"} <= page.ids
    assert not list((tmp_path / "pipeline/report").glob(".*tmp"))


def test_figures_follow_the_plot_definitions_of_dvc_yaml(tmp_path, monkeypatch):
    make_tree(tmp_path, fake_metrics())
    dvc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    dvc["plots"] = [entry for entry in dvc["plots"] if "SR losses" not in entry]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    page = Page((tmp_path / REPORT).read_text(encoding="utf-8"))
    assert "plot-0-sr-losses" not in page.ids and "plot-0-cyclegan-classical-input-losses" in page.ids
    assert len(page.images) == 5 + len(dvc["plots"])


def test_params_are_shown(tmp_path, monkeypatch):
    _, page = build(tmp_path, monkeypatch, fake_metrics())
    cells = [r for name, table in page.tables.items() if name.startswith("params-") for r in table]
    assert ["seed", "42"] in cells and ["percentiles", "[0.5, 99.5]"] in cells
    assert ["data.sim", ""] in cells and ["tr_ms", "4000.0"] in cells
    lambda_cycle = yaml.safe_load(open("params.yaml"))["train"]["lambda_cycle"]
    assert ["vgg19_path", '""'] in cells and ["lambda_cycle", str(lambda_cycle)] in cells


@pytest.mark.parametrize("spoil, key", [
    (lambda m: m["sim2real"].pop("downstream"), "sim2real.downstream: missing"),
    (lambda m: m["sr"].pop("uncertainty"), "sr.uncertainty: missing"),
    (lambda m: m["sr"]["gan_model"]["psnr_db"].pop("ci95_low"), "sr.gan_model.psnr_db_ci95_low: missing"),
    (lambda m: m["sr"]["gan_model"].update(lpips=estimate(0.2)), "sr.gan_model.lpips: unexpected key"),
    (lambda m: m.pop("backbones"), "backbones: missing"),
])
def test_a_missing_or_unknown_section_fails_naming_key_and_file_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                                                    spoil, key):
    tree = fake_metrics()
    make_tree(tmp_path, tree)
    spoil(tree)
    flat = schema.flatten(tree)
    (tmp_path / METRICS).write_text(json.dumps(flat))
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert str(METRICS) in err and key in err, err
    assert not (tmp_path / "pipeline/report").exists()


@pytest.mark.parametrize("missing", [
    "pipeline/evaluate/metrics.json", "params.yaml", "pipeline/evaluate/examples", "dvc.yaml",
    "pipeline/evaluate/examples/sim2real_grid.png", "pipeline/evaluate/plots/differences.json",
    "pipeline/evaluate/examples/sr_calibration.png", "pipeline/evaluate/plots/reliability.json",
    "pipeline/train_sr_psnr/live/plots/metrics", "pipeline/train_sr/live/plots/metrics",
    "pipeline/train_cyclegan/classical/live/plots/metrics",
    "pipeline/train_cyclegan/classical/live/plots/metrics/d_real/real_sign.tsv", "pipeline/train_segmenter/metrics.json",
])
def test_missing_input_exits_1_naming_it_and_writes_nothing(tmp_path, monkeypatch, capsys, missing):
    make_tree(tmp_path, fake_metrics())
    target = tmp_path / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert missing in capsys.readouterr().err
    assert not (tmp_path / "pipeline/report").exists()


def test_a_loss_term_switched_off_leaves_its_curve_out_and_the_report_is_written(tmp_path, monkeypatch):
    """`dvc exp run -S train.sr.lambda_adv=0`: the term is not computed, so g/adv.tsv is never logged."""
    make_tree(tmp_path, fake_metrics())
    (tmp_path / "pipeline/train_sr/live/plots/metrics/g/adv.tsv").unlink()
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    text = (tmp_path / REPORT).read_text(encoding="utf-8")
    caption = re.search(r"SR losses by step \(dvc.yaml plots, from ([^)]*)\)", text).group(1)
    assert "g/pixel.tsv" in caption and "g/adv.tsv" not in caption


def test_segmenter_metrics_without_a_split_is_an_error(tmp_path, monkeypatch, capsys):
    make_tree(tmp_path, fake_metrics())
    path = tmp_path / "pipeline/train_segmenter/metrics.json"
    scores = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("val_real/")}
    path.write_text(json.dumps(scores))
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert "val_real/dice/mean_foreground" in capsys.readouterr().err


def test_corrupt_png_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    make_tree(tmp_path, fake_metrics())
    (tmp_path / "pipeline/evaluate/examples/sr_grid.png").write_bytes(b"not a png")
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert "pipeline/evaluate/examples/sr_grid.png" in capsys.readouterr().err
    assert not (tmp_path / "pipeline/report").exists()


def test_cli_runs_as_a_module(tmp_path):
    make_tree(tmp_path, fake_metrics())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    help_text = subprocess.run([sys.executable, "-m", "src.report", "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, check=True).stdout
    assert "pipeline/evaluate/metrics.json" in help_text and str(report.OUT) in help_text
    done = subprocess.run([sys.executable, "-m", "src.report"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / REPORT).stat().st_size > 10_000


def test_templates_ship_with_the_package():
    # pyproject's package-data must cover every file under src/templates (setuptools ships only .py files
    # by itself: checked by building a wheel), or an installed copy of the package cannot render the report.
    import tomllib
    from fnmatch import fnmatch

    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    templates = REPO / "src/templates"
    files = [p.relative_to(REPO) for p in templates.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    for path in files:
        package = ".".join(path.parent.parts)
        assert any(fnmatch(path.name, pattern) for pattern in package_data.get(package, [])), (path, package_data)


# --- headless Chromium -------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]

# Injected into a copy of the report: records script errors and, once loaded, whether every image decoded.
PROBE_HEAD = ('<script>window.addEventListener("error", function (e) {'
              ' document.documentElement.dataset.jsErrors = (document.documentElement.dataset.jsErrors || "")'
              ' + e.message + ";"; });</script>')
PROBE_BODY = ('<script>window.addEventListener("load", function () {'
              ' var images = Array.prototype.slice.call(document.images);'
              ' document.body.dataset.imagesTotal = String(images.length);'
              ' document.body.dataset.imagesOk = String(images.length > 0 && images.every('
              '  function (i) { return i.complete && i.naturalWidth > 0; }));'
              ' document.body.dataset.probeRan = "yes"; });</script>')


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the chromium executable; `make test` installs Debian's chromium where it can. Absent: skipped."""
    found = shutil.which("chromium")
    if found is None:
        print("chromium not on PATH: the report browser tests skip (`make test` installs it when run as root)")
        pytest.skip(reason="chromium is not installed (a test dependency: `make test` installs it when run as root)")
    return found


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(tmp_path, monkeypatch, chromium):
    text, page = build(tmp_path, monkeypatch, fake_metrics())
    probe = tmp_path / "probe.html"
    probed = text.replace("</head>", PROBE_HEAD + "</head>", 1).replace("</body>", PROBE_BODY + "</body>", 1)
    probe.write_text(probed, encoding="utf-8")
    done = run_chromium(chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'data-probe-ran="yes"' in dom, f"page did not finish loading; stderr: {done.stderr[-2000:]}"
    assert f'data-images-total="{len(page.images)}"' in dom
    assert 'data-images-ok="true"' in dom
    assert "data-js-errors" not in dom and "Uncaught" not in done.stderr
    rendered = Page(dom)
    assert {"sr-metrics", "sr-comparisons", "s2r-realism", "s2r-content", "s2r-downstream", "s2r-comparisons",
            "backbones"} <= rendered.tables.keys()
    assert len(rendered.images) == len(page.images)
    assert all(src.startswith("data:image/png;base64,") for src in rendered.images)


def test_report_screenshot_is_not_blank(tmp_path, monkeypatch, chromium):
    build(tmp_path, monkeypatch, fake_metrics())
    shot = tmp_path / "shot.png"
    done = run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000",
                        (tmp_path / REPORT).as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10 and (pixels < 100).mean() > 0.005  # text and tables, not an empty page
