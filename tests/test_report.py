"""Tests for the `report` stage: a fake pipeline tree in, one self-contained HTML page out, checked in headless Chromium."""

import base64
import copy
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
from src.report import fmt, main

REPO = Path(__file__).resolve().parents[1]
REPORT = Path("pipeline/report/report.html")
FALLBACK_FEATURES = "judge_unet_encoder (fallback: FID Inception weights unavailable)"

PARAMS = {"seed": 42, "data": {"scale": 4, "percentiles": [0.5, 99.5], "sim": {"tr_ms": 500.0}},
          "weights": {"vgg19_path": "", "allow_download": True}, "train": {"lambda_cycle": 10.0}}


def sr_results(distribution: str) -> dict:
    """SR metrics per the evaluate schema: `distribution` 'judge' gives fd_/kid_judge_unet_encoder, else fid/kid."""
    if distribution == "judge":
        names = ("kid_judge_unet_encoder", "kid_judge_unet_encoder_std", "fd_judge_unet_encoder")
    else:
        names = ("kid", "kid_std", "fid")
    rows = {"naive": (27.1234, 0.81234, 99.01234, 12.3456, 0.0212345, 0.00123456, 3.21234),
            "psnr_model": (29.8765, 0.87654, 45.6789, 8.76543, 0.0112345, 0.00098765, 2.34567),
            "gan_model": (28.5432, 0.84321, 41.2345, 4.32109, 0.00412345, 0.00054321, 1.23456)}
    return {row: dict(zip(("psnr_db", "ssim", "data_consistency_psnr_db", "swd") + names, values))
            for row, values in rows.items()}


def fake_metrics(distribution: str = "judge", weak: bool = True) -> dict:
    space = ("kid_judge_unet_encoder", "fd_judge_unet_encoder") if distribution == "judge" else ("kid", "fid")
    classes = lambda a, b, c: {"CSF": a, "GM": b, "WM": c, "mean_foreground": round((a + b + c) / 3, 6)}  # noqa: E731
    return {
        "protocol": {"split": "test", "seed": 42, "n_sr_test": 20, "n_sim2real_test": 20, "crop_border": 4,
                     "data_range": 2.0, "swd": {"descriptors_per_image": 128, "directions": 512},
                     "kid": {"subsets": 100, "subset_size": 32}, "downstream_steps": 250},
        "backbones": {
            "distribution_features": FALLBACK_FEATURES if distribution == "judge" else "inception_fid",
            "perceptual_loss_sr": "vgg19_random_init" if weak else "vgg19_imagenet",
            "perceptual_loss_cyclegan": "vgg19_imagenet",
            "judge_encoder": "resnet18_random_init" if weak else "resnet18_imagenet",
        },
        "sr": {**sr_results(distribution),
               "uncertainty": {"tta_spearman_psnr_model": 0.412345, "tta_spearman_gan_model": 0.351234,
                               "hallucination_spearman": 0.298765}},
        "sim2real": {
            "realism": {"raw_sim": {"swd": 25.4321, space[0]: 0.0876543, space[1]: 9.87654},
                        "translated_sim": {"swd": 11.2233, space[0]: 0.0234567, space[1]: 4.56789}},
            "content": {"judge_on_raw_sim": classes(0.51234, 0.61234, 0.71234),
                        "judge_on_translated_sim": classes(0.48766, 0.59876, 0.69876)},
            "downstream": {"sim_only": classes(0.31234, 0.41234, 0.51234),
                           "translated_sim": classes(0.38765, 0.46543, 0.55432),
                           "real_oracle": classes(0.61234, 0.70123, 0.80123), "gap_closed_fraction": 0.412345},
        },
        "wall_time_s": 123.0,
    }


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
    """A pipeline tree as the upstream stages leave it, small enough for a fast test."""
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    evaluate = root / "pipeline/evaluate"
    evaluate.mkdir(parents=True)
    (evaluate / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_png(evaluate / "examples/sr_grid.png", 8 * tile, 3 * tile, seed=1)
    write_png(evaluate / "examples/sim2real_grid.png", 4 * tile, 3 * tile, seed=2)
    write_png(evaluate / "examples/extra_panel.png", 2 * tile, tile, seed=3)
    steps = np.arange(60)
    sr = root / "pipeline/train_sr/live/plots/metrics"
    write_tsv(sr / "g/pixel.tsv", "pixel", 0.2 * np.exp(-steps / 20) + 0.02)
    write_tsv(sr / "g/adv.tsv", "adv", 0.7 + 0.1 * np.sin(steps))
    write_tsv(sr / "d/adv.tsv", "adv", 1.3 - 0.1 * np.sin(steps))
    write_tsv(sr / "d/real_sign.tsv", "real_sign", np.linspace(0, 0.6, 60))
    cyclegan = root / "pipeline/train_cyclegan/live/plots/metrics"
    write_tsv(cyclegan / "g/cycle.tsv", "cycle", [1.0, 0.8, 0.6, 0.5, 0.45])
    write_tsv(cyclegan / "g/adv.tsv", "adv", [0.5, 0.4, 0.45, 0.42, 0.4])
    write_tsv(cyclegan / "d_real/adv.tsv", "adv", [0.3, 0.25, 0.24, 0.22, 0.2])
    write_tsv(cyclegan / "d_sim/adv.tsv", "adv", [0.3, 0.26, 0.25, 0.21, 0.21])
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


def test_report_shows_sr_and_sim2real_tables_with_the_values(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics("judge"))
    sr = page.tables["sr-metrics"]
    assert sr[0] == ["", "PSNR (dB) ↑", "SSIM ↑", "data-consistency PSNR (dB) ↑", "SWD ↓",
                     "KID (judge_unet_encoder features) ↓", "FD (judge_unet_encoder features) ↓"]
    assert [r[0] for r in sr[1:]] == ["naive upsampling (baseline)", "PSNR model (L1 only)", "GAN model (SRGAN)"]
    assert row(sr, "naive upsampling (baseline)")[1:] == \
        ["27.12", "0.8123", "99.01", "12.35", "0.02123 ± 0.001235", "3.212"]
    assert row(sr, "GAN model (SRGAN)")[1:] == ["28.54", "0.8432", "41.23", "4.321", "0.004123 ± 0.0005432", "1.235"]
    assert row(page.tables["sr-uncertainty"], "GAN model: TTA uncertainty vs |error|")[2] == "0.3512"

    realism = page.tables["s2r-realism"]
    assert row(realism, "raw simulation (baseline)")[1:] == ["25.43", "0.08765", "9.877"]
    assert row(realism, "translated sim (g_sim2real)")[1:] == ["11.22", "0.02346", "4.568"]
    content = page.tables["s2r-content"]
    assert content[0] == ["", "CSF ↑", "GM ↑", "WM ↑", "mean (foreground) ↑"]
    assert row(content, "judge on translated sim")[1:4] == ["0.4877", "0.5988", "0.6988"]
    downstream = page.tables["s2r-downstream"]
    assert row(downstream, "trained on raw sim (baseline)")[1] == "0.3123"
    assert row(downstream, "trained on real labels (oracle)")[3] == "0.8012"
    assert "0.4123" in text and "gap-closed" in page.ids
    assert row(page.tables["segmenter-dice"], "validation, real slices")[1] == "0.5556"
    assert ["split", "test"] in [r for r in page.tables["protocol"]]


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


def test_report_is_self_contained(tmp_path, monkeypatch):
    text, page = build(tmp_path, monkeypatch, fake_metrics())
    assert not [ref for ref in page.refs if re.match(r"\s*(https?:)?//", ref)]
    assert not re.search(r"<(script|link|iframe)\b", text) and "@import" not in text and "url(" not in text
    # three example PNGs and one loss-curve figure per training run
    assert len(page.images) == 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert {"sr_grid-png", "sim2real_grid-png", "example-extra_panel.png", "curves-train_sr",
            "curves-train_cyclegan"} <= page.ids
    assert not list((tmp_path / "pipeline/report").glob(".*tmp"))


def test_params_are_shown(tmp_path, monkeypatch):
    _, page = build(tmp_path, monkeypatch, fake_metrics())
    cells = [r for name, table in page.tables.items() if name.startswith("anonymous") for r in table]
    assert ["seed", "42"] in cells and ["percentiles", "[0.5, 99.5]"] in cells
    assert ["data.sim"] in cells and ["tr_ms", "500.0"] in cells
    assert ["vgg19_path", '""'] in cells and ["lambda_cycle", "10.0"] in cells


def test_unknown_keys_go_to_other_metrics_and_missing_sections_are_noted(tmp_path, monkeypatch):
    metrics = copy.deepcopy(fake_metrics())
    metrics["sr"]["gan_model"]["lpips_like"] = {"alex": 0.25}
    metrics["timing"] = {"sr_s": 1.5}
    metrics["sr"]["ema_model"] = {"psnr_db": 28.0}
    del metrics["sr"]["uncertainty"]
    del metrics["sim2real"]["downstream"]
    text, page = build(tmp_path, monkeypatch, metrics)
    other = page.tables["other-metrics"]
    assert ["timing.sr_s", "1.500"] in other and ["sr.gan_model.lpips_like.alex", "0.2500"] in other
    assert row(page.tables["sr-metrics"], "ema_model")[1:3] == ["28.00", "–"]
    words = html.unescape(text)
    assert 'no "sr.uncertainty" section' in words and 'no "sim2real.downstream" section' in words
    assert "sr-uncertainty" not in page.tables and "s2r-downstream" not in page.tables


@pytest.mark.parametrize("missing", [
    "pipeline/evaluate/metrics.json", "params.yaml", "pipeline/evaluate/examples",
    "pipeline/train_sr/live/plots/metrics", "pipeline/train_cyclegan/live/plots/metrics",
    "pipeline/train_segmenter/metrics.json",
])
def test_missing_input_exits_1_naming_it_and_writes_nothing(tmp_path, monkeypatch, capsys, missing):
    make_tree(tmp_path, fake_metrics())
    target = tmp_path / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert missing in capsys.readouterr().err
    assert not (tmp_path / "pipeline/report").exists()


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


# --- headless Chromium -------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
INSTALL_TIMEOUT_S = 600

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
    """Path of Debian's chromium; installed with apt-get when missing and we are root, else the test is skipped."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(reason="chromium is not installed and apt-get is not available to install it")
    if os.geteuid() != 0:
        pytest.skip(reason="chromium is not installed and installing it with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(reason=f"`{' '.join(command)}` did not finish within {INSTALL_TIMEOUT_S} s: chromium unavailable")
        if done.returncode != 0:
            pytest.skip(reason=f"`{' '.join(command)}` failed (exit {done.returncode}): {(done.stdout + done.stderr)[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip(reason="`apt-get install -y chromium` succeeded but no chromium executable is on PATH")
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
    assert {"sr-metrics", "s2r-realism", "s2r-content", "s2r-downstream", "backbones"} <= rendered.tables.keys()
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
