"""Tests for the evaluation stages' handling of bad inputs, on a tiny fake pipeline tree.

The evaluation runs as four stages (baselines, evaluate_sr, evaluate_sim2real, then evaluate, which
assembles); `run_evaluation` runs them in dvc.yaml's order and stops at the first failure, as `dvc repro`
does. Bad input must give a clear error naming the file, exit status 1, and no metrics.json (nor any
temporary file) in pipeline/evaluate/. `make_tree`, `write_params` and `run_evaluation` are also used
by test_downstream_protocol.py, test_evaluate_outputs.py and test_evaluate_split.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from src import baselines, evaluate, evaluate_sim2real, evaluate_sr
from src.data.degrade import degrade, naive_upsample
from src.models.cyclegan import ResnetGenerator
from src.models.srresnet import SRResNet
from src.training.checkpoint import save_weights
from src.training.provenance import META_KEY, sr_provenance, translator_provenance
from tests.faults.faults_helpers import provenance_in

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["background", "csf", "gm", "wm"]
SIZE, SCALE, N = 32, 4, 4
G_PSNR = Path("pipeline/train_sr_psnr/g_psnr.pt")
G_GAN = Path("pipeline/train_sr/g_gan.pt")
G_SIM2REAL = Path("pipeline/train_cyclegan/classical/g_sim2real.pt")
G_SIM2REAL_RAW = Path("pipeline/train_cyclegan/sim/g_sim2real.pt")
METRICS = Path("pipeline/evaluate/metrics.json")


def band_labels(n: int) -> np.ndarray:
    """(n, SIZE, SIZE) uint8 label maps: vertical bands of 4 / 4 / 8 / 16 columns for classes 0..3."""
    row = np.repeat(np.arange(4, dtype=np.uint8), [4, 4, 8, 16])
    return np.broadcast_to(row, (n, SIZE, SIZE)).copy()


def render(labels: np.ndarray, intensities, rng: np.random.Generator) -> np.ndarray:
    """Label maps -> (n, 1, SIZE, SIZE) float32 images in [-1, 1]: one grey level per class plus noise."""
    images = np.asarray(intensities, np.float32)[labels] + rng.normal(0, 0.05, labels.shape).astype(np.float32)
    return images.clip(-1, 1)[:, None]


def save_sr_model(path: Path, scale: int = SCALE, degradation: str = "kspace", seed: int = 1,
                  phase: str | None = None, provenance: dict | None = None) -> None:
    """An SR generator file as train_sr_psnr / train_sr write it; `phase` defaults to the file's own (g_psnr.pt: psnr);
    `provenance`: what it records it was trained on (none: a file of an older version)."""
    torch.manual_seed(seed)
    g = SRResNet(scale, degradation, channels=4, blocks=1)
    save_weights(path, g, {"scale": scale, "degradation": degradation, "channels": 4, "blocks": 1,
                           "data_consistency": False, "clamp_output": False, "data_consistency_band": 1.0, "phase": phase or path.stem.removeprefix("g_"),
                           **({META_KEY: provenance} if provenance else {})})


def save_translator(path: Path, seed: int = 2, direction: str = "sim2real", source: str | None = None,
                    provenance: dict | None = None) -> None:
    """A translator file as train_cyclegan@<source> writes it; `source` defaults to the folder it goes into."""
    torch.manual_seed(seed)
    save_weights(path, ResnetGenerator(1, 4, 1), {"channels": 4, "blocks": 1, "residual": False,
                                                  "direction": direction, "input": source or path.parent.name,
                                                  **({META_KEY: provenance} if provenance else {})})


def save_split(folder: Path, **arrays: np.ndarray) -> None:
    """One prepared split as prepare writes it: <folder>/<key>.npy per array."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)


def make_tree(root: Path, n_test: int = N) -> dict[str, np.ndarray]:
    """data/prepared/{sr,sim2real}, three generator files and an all-unavailable weights manifest.

    Returns the arrays written to data/prepared/sim2real/{train,test}/, keyed "<split>/<array>".
    """
    rng = np.random.default_rng(0)
    sr_dir = root / "data/prepared/sr"
    s2r_dir = root / "data/prepared/sim2real"
    sr_dir.mkdir(parents=True)
    s2r_dir.mkdir(parents=True)

    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    hr = np.stack([np.sin(2 * np.pi * (k + 1) * xx) * np.cos(2 * np.pi * yy) * 0.8 for k in range(n_test)])
    hr = hr + rng.normal(0, 0.1, hr.shape)  # not band-limited: the naive upsampling is not exact
    hr = torch.from_numpy(hr.clip(-1, 1).astype(np.float32)[:, None])
    lr = degrade(hr, SCALE, "kspace")
    save_split(sr_dir / "test", hr=hr.numpy(), lr=lr.numpy(), naive=naive_upsample(lr, SCALE, "kspace").numpy())
    # val (calibrates the SR uncertainty maps): the test slices with other noise, from a separate generator
    val_hr = (hr + torch.from_numpy(np.random.default_rng(1).normal(0, 0.05, hr.shape).astype(np.float32))).clamp(-1, 1)
    save_split(sr_dir / "val", hr=val_hr.numpy(), lr=degrade(val_hr, SCALE, "kspace").numpy())
    # train: never read by the evaluation, only fingerprinted as what the SR models were trained on
    save_split(sr_dir / "train", hr=val_hr.numpy()[::-1].copy(), lr=degrade(val_hr.flip(0), SCALE, "kspace").numpy())
    (sr_dir / "meta.json").write_text(json.dumps({"scale": SCALE, "degradation": "kspace", "image_size": SIZE}))

    arrays = {}
    for split, n in (("train", N), ("test", n_test)):
        labels = band_labels(n)
        # Train: sim and real labels differ (unpaired, as prepare's train split); test: each sim is rendered from
        # its real slice's labels (aligned, as prepare's val/test), so paired fidelity has a counterpart.
        sim_labels = np.roll(labels, 1, axis=2) if split == "train" else labels.copy()
        arrays.update({
            f"{split}/sim": render(sim_labels, [-1.0, 0.6, -0.2, 0.3], rng), f"{split}/sim_labels": sim_labels,
            f"{split}/classical": render(sim_labels, [-1.0, -0.5, 0.2, 0.6], rng),
            f"{split}/real": render(labels, [-1.0, -0.6, 0.1, 0.7], rng), f"{split}/real_labels": labels,
        })
        save_split(s2r_dir / split, **{k.split("/")[1]: v for k, v in arrays.items() if k.startswith(split)})
    (s2r_dir / "meta.json").write_text(json.dumps({"written": True, "class_names": CLASS_NAMES,
                                                   "val_test_aligned": True}))

    # The models record the data above and the test params as what they were trained on, as the SR stages and
    # train_cyclegan would.
    write_params(root)
    save_sr_model(root / G_PSNR, provenance=provenance_in(root, sr_provenance, "psnr"))
    save_sr_model(root / G_GAN, seed=3, provenance=provenance_in(root, sr_provenance, "gan"))
    save_translator(root / G_SIM2REAL, provenance=provenance_in(root, translator_provenance, "classical"))
    save_translator(root / G_SIM2REAL_RAW, seed=4, provenance=provenance_in(root, translator_provenance, "sim"))
    weights_dir = root / "pipeline/weights"
    weights_dir.mkdir(parents=True)
    (weights_dir / "manifest.json").write_text(json.dumps({
        name: {"status": "unavailable", "description": name, "reason": "test: no weights"}
        for name in ("vgg19", "inception_fid", "resnet18")}))
    return arrays


def write_params(root: Path) -> Path:
    """The repository's params.yaml with the evaluate and segmenter budgets cut to a few seconds on CPU."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["segmenter"].update(encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 4], steps=1,
                            batch_size=2, crop_size=SIZE)
    raw["evaluate"].update(device="cpu", batch_size=4, swd_descriptors_per_image=8, swd_directions=8,
                           kid_subsets=2, kid_subset_size=2, downstream_steps=1, n_examples=2,
                           # one process: spawning training processes costs seconds, more than these 1-step U-Nets
                           # (tests/evaluation/test_downstream_processes.py and test_evaluate_split.py run them)
                           downstream_processes=1)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run ~10x faster on one intra-op thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path)
    return tmp_path


EVALUATION_STAGES = (baselines, evaluate_sr, evaluate_sim2real, evaluate)  # dvc.yaml's order


def run_evaluation(params_path: Path, stages=EVALUATION_STAGES) -> int:
    """Each stage's main in turn, in this process; the first non-zero exit code, or 0."""
    for stage in stages:
        rc = stage.main(["--params", str(params_path)])
        if rc:
            return rc
    return 0


def run_evaluate(root: Path) -> int:
    return run_evaluation(write_params(root))


def assert_no_output(root: Path) -> None:
    assert not (root / METRICS).exists()
    out = root / "pipeline/evaluate"
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert leftovers == [], f"stray files in pipeline/evaluate: {leftovers}"


def assert_failed_naming(root: Path, capsys, rc: int, *names: str) -> None:
    assert rc == 1
    err = capsys.readouterr().err
    for name in names:
        assert name in err, f"{name!r} not in stderr:\n{err}"
    assert_no_output(root)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("missing", [G_GAN, G_PSNR, G_SIM2REAL, G_SIM2REAL_RAW], ids=str)
def test_missing_model_file(tree, capsys, missing):
    (tree / missing).unlink()
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(missing))


def test_corrupt_checkpoint(tree, capsys):
    (tree / G_GAN).write_bytes(np.random.default_rng(0).bytes(4096))
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(G_GAN))


def test_truncated_checkpoint(tree, capsys):
    data = (tree / G_SIM2REAL).read_bytes()
    (tree / G_SIM2REAL).write_bytes(data[: len(data) // 2])
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(G_SIM2REAL))


def wrong_channels(meta: dict) -> None:
    meta["channels"] = 8  # the tensors have 4


def no_blocks(meta: dict) -> None:
    del meta["blocks"]


@pytest.mark.parametrize("path", [G_SIM2REAL, G_PSNR], ids=lambda p: p.name)
@pytest.mark.parametrize("spoil", [wrong_channels, no_blocks])
def test_checkpoint_whose_meta_does_not_fit_its_weights(tree, capsys, path, spoil):
    # A readable weights file of this project whose meta does not describe its tensors (edited,
    # or written by an older version): a clear error naming the file, not a bare torch traceback.
    blob = torch.load(tree / path, weights_only=True)
    spoil(blob["meta"])
    torch.save(blob, tree / path)
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(path))


@pytest.mark.parametrize("split_file", ["data/prepared/sim2real/test/real.npy", "data/prepared/sr/test/hr.npy"])
def test_test_split_with_zero_images(tree, capsys, split_file):
    for path in (tree / split_file).parent.glob("*.npy"):
        np.save(path, np.load(path)[:0])
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(Path(split_file).parent))


@pytest.mark.parametrize("direction, source", [("real2sim", "classical"), ("sim2real", "sim")],
                         ids=["real2sim_generator_as_sim2real", "other_inputs_translator"])
def test_translator_file_that_is_not_the_model_asked_for(tree, capsys, direction, source):
    # Was exit 0 with the wrong model's numbers: evaluate trusted whatever file sat at the path.
    save_translator(tree / G_SIM2REAL, direction=direction, source=source)
    assert run_evaluate(tree) == 1
    err = capsys.readouterr().err
    assert str(G_SIM2REAL) in err and "train_cyclegan@classical" in err, err
    assert f"is the {direction} generator trained on the {source} input" in err, err
    assert_no_output(tree)


def test_psnr_model_copied_over_the_gan_model_is_refused(tree, capsys):
    # Was exit 0: the PSNR model's numbers reported as the GAN's.
    save_sr_model(tree / G_GAN, phase="psnr")
    assert run_evaluate(tree) == 1
    err = capsys.readouterr().err
    assert str(G_GAN) in err and "is the psnr model of SR training, but is read as the gan model" in err, err
    assert_no_output(tree)


def test_sr_model_trained_for_another_scale(tree, capsys):
    save_sr_model(tree / G_PSNR, scale=2)
    rc = run_evaluate(tree)
    err = capsys.readouterr().err
    assert rc == 1
    assert str(G_PSNR) in err and "x2" in err and "x4" in err
    assert_no_output(tree)


def test_sr_model_trained_for_another_degradation(tree, capsys):
    save_sr_model(tree / G_GAN, degradation="bicubic")
    assert_failed_naming(tree, capsys, run_evaluate(tree), str(G_GAN), "bicubic")


def test_missing_weights_manifest(tree, capsys):
    (tree / "pipeline/weights/manifest.json").unlink()
    assert_failed_naming(tree, capsys, run_evaluate(tree), "pipeline/weights/manifest.json")


def test_failed_run_keeps_no_half_written_metrics_over_an_earlier_run(tree, capsys):
    # A failure must not write a partial file; an earlier run's metrics.json is left as it was.
    (tree / "pipeline/evaluate").mkdir(parents=True)
    (tree / METRICS).write_text('{"earlier": true}\n')
    (tree / G_GAN).unlink()
    assert run_evaluate(tree) == 1
    assert json.loads((tree / METRICS).read_text()) == {"earlier": True}
    assert sorted(p.name for p in (tree / "pipeline/evaluate").iterdir()) == ["metrics.json"]


# ---------------------------------------------------------------- happy path
def all_keys(obj) -> list[str]:
    if isinstance(obj, dict):
        return [k for key, value in obj.items() for k in [key, *all_keys(value)]]
    return []


def test_happy_path_without_inception_weights_names_the_fallback_feature_space(tree, capsys):
    assert run_evaluate(tree) == 0
    metrics = json.loads((tree / METRICS).read_text())

    assert "fallback" in metrics["backbones"]["distribution_features"]
    assert metrics["backbones"]["judge_encoder"] == "resnet18_random_init"
    keys = all_keys(metrics)
    # `fid` as a word of a key (fid, fid_ci95_low, ...), not inside another word (fidelity)
    assert not [k for k in keys if "fid" in k.split("_")], "FID named without Inception weights"
    for group in (metrics["sr"]["naive"], metrics["sr"]["gan_model"], metrics["sim2real"]["realism"]["translated_sim"]):
        assert {"fd_judge_unet_encoder", "kid_judge_unet_encoder", "swd"} <= set(group)
        # n beside every distribution distance; no subset "std" of KID (with N <= subset size it is 0 by construction)
        assert group["swd_n"] == group["fd_judge_unet_encoder_n"] == group["kid_judge_unet_encoder_n"] == N
        assert not [k for k in group if k.endswith("_std")]
    assert metrics["protocol"]["kid"]["effective_subset_size"] == 2  # write_params: kid_subset_size 2 < N
    assert metrics["protocol"]["kid"]["subset_is_whole_set"] is False
    assert metrics["protocol"]["n_sr_test"] == N and metrics["protocol"]["n_sim2real_test"] == N
    assert metrics["protocol"]["crop_border"] == SCALE

    # The naive row, recomputed with numpy from the saved arrays: crop border = scale, data range 2.
    hr = np.load(tree / "data/prepared/sr/test/hr.npy").astype(np.float64)
    naive = np.load(tree / "data/prepared/sr/test/naive.npy").clip(-1, 1).astype(np.float64)
    c = SCALE
    mse = ((naive - hr)[..., c:-c, c:-c] ** 2).mean(axis=(1, 2, 3))
    assert metrics["sr"]["naive"]["psnr_db"] == pytest.approx(np.mean(10 * np.log10(4.0 / mse)), abs=1e-3)
    for row in ("naive", "psnr_model", "gan_model"):
        assert np.isfinite(metrics["sr"][row]["psnr_db"]) and -1 <= metrics["sr"][row]["ssim"] <= 1

    out = tree / "pipeline/evaluate"
    assert sorted(p.name for p in out.iterdir()) == ["examples", "headline.json", "metrics.json", "per_slice.csv", "plots"]
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["sim2real_grid.png", "sr_calibration.png",
                                                                   "sr_grid.png"]


def test_examples_folder_is_readable_like_other_stage_outputs(tree):
    # prepare chmods its mkdtemp staging folder to 0755; examples/ must not keep mkdtemp's private 0700.
    assert run_evaluate(tree) == 0
    examples = tree / "pipeline/evaluate/examples"
    assert examples.stat().st_mode & 0o055 == 0o055, oct(examples.stat().st_mode)
