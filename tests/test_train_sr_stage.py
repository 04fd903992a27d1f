"""The SR stages (train_sr_psnr, then train_sr from its model): outputs, kill -9 then resume (as processes), fresh
start on changed params, and what a GAN-phase change leaves alone (in this process: a process start costs more
than these tiny runs)."""

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from src.data.degrade import degrade, naive_upsample
from src.training.checkpoint import load_weights

REPO = Path(__file__).resolve().parents[1]


def save_split(folder: Path, **arrays: np.ndarray) -> None:
    """One prepared split as prepare writes it: <folder>/<key>.npy per array."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)


def make_tree(root: Path, psnr_steps: int = 600, gan_steps: int = 40) -> Path:
    """Tiny prepared SR data, an offline weights manifest and a params file sized for seconds."""
    gen = torch.Generator().manual_seed(0)
    sr_dir = root / "data/prepared/sr"
    sr_dir.mkdir(parents=True)
    for split, n in (("train", 6), ("val", 3)):
        hr = torch.rand(n, 1, 32, 32, generator=gen) * 2 - 1
        lr = degrade(hr, 4, "kspace")
        save_split(sr_dir / split, hr=hr.numpy(), lr=lr.numpy(), naive=naive_upsample(lr, 4, "kspace").numpy())
    (sr_dir / "meta.json").write_text(json.dumps({"scale": 4, "degradation": "kspace"}))
    weights = root / "pipeline/weights"
    weights.mkdir(parents=True)
    (weights / "manifest.json").write_text(json.dumps(
        {name: {"status": "unavailable", "reason": "test"} for name in ("vgg19", "inception_fid", "resnet18")}))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["device"] = "cpu"
    params["train"]["sr"].update(crop_size=16, batch_size=2, g_blocks=1, g_channels=4, d_channels=4, d_layers=2,
                                 psnr_steps=psnr_steps, gan_steps=gan_steps, log_every=5, sample_every=1000,
                                 checkpoint_every=20, vgg_layers=["relu1_1"])
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


PSNR, GAN = "src.train_sr_psnr", "src.train_sr"
PSNR_DIR, GAN_DIR = Path("pipeline/train_sr_psnr"), Path("pipeline/train_sr")


def run_stage(cwd: Path, module: str = GAN, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DVCLIVE_TEST": ""}
    return subprocess.Popen([sys.executable, "-m", module], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture
def stage(monkeypatch, caplog, capsys):
    """`stage(root, module, expect=0)`: the stage's main() in `root`, one thread; returns its log and stderr."""
    def call(root: Path, module: str, expect: int = 0) -> str:
        monkeypatch.chdir(root)
        caplog.clear()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with caplog.at_level(logging.INFO):
                rc = importlib.import_module(module).main(["--params", "params.yaml"])
        finally:
            torch.set_num_threads(threads)
        out = caplog.text + capsys.readouterr().err
        assert rc == expect, out[-3000:]
        return out
    return call


def metric_steps(root: Path, stage_dir: Path = PSNR_DIR) -> list[int]:
    rows = (root / stage_dir / "live/plots/metrics/g/pixel.tsv").read_text().splitlines()[1:]
    return [int(r.split("\t")[0]) for r in rows]  # dvclive tsv: step, value


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, stage):
    straight = make_tree(tmp_path / "straight")
    stage(straight, PSNR)
    stage(straight, GAN)
    for name in ("g_psnr.pt", "config.json", "checkpoint/last.pt", "live/metrics.json"):
        assert (straight / PSNR_DIR / name).exists(), name
    for name in ("g_gan.pt", "config.json", "checkpoint/last.pt", "live/metrics.json"):
        assert (straight / GAN_DIR / name).exists(), name
    assert metric_steps(straight, GAN_DIR)[0] > metric_steps(straight)[-1], "phase 2 goes on from phase 1's steps"

    killed = make_tree(tmp_path / "killed")
    proc = run_stage(killed, PSNR)
    checkpoint = killed / PSNR_DIR / "checkpoint/last.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # let it run past the checkpoint, so there is work to redo
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed; raise psnr_steps"
    assert not (killed / PSNR_DIR / "g_psnr.pt").exists()

    out = stage(killed, PSNR)  # resumed in this process: the same code and thread count as the straight run
    assert "resuming from" in out
    stage(killed, GAN)
    for path in (PSNR_DIR / "g_psnr.pt", GAN_DIR / "g_gan.pt"):
        a = load_weights(straight / path)["state_dict"]
        b = load_weights(killed / path)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), f"{path} differs after kill -9 + resume"
    # Logged rows after the checkpoint were trimmed and re-logged once: no duplicates, same steps.
    assert metric_steps(killed) == metric_steps(straight)

    # DVC deletes a stage's (non-persisted) outputs before re-running it; a run resumed at its end must
    # rebuild its model from the checkpoint alone.
    for stage_dir, module, name in ((PSNR_DIR, PSNR, "g_psnr.pt"), (GAN_DIR, GAN, "g_gan.pt")):
        expected = load_weights(straight / stage_dir / name)["state_dict"]
        for output in (name, "config.json"):
            (straight / stage_dir / output).unlink()
        out = stage(straight, module)
        assert "resuming from" in out
        rebuilt = load_weights(straight / stage_dir / name)["state_dict"]
        assert all(torch.equal(expected[k], rebuilt[k]) for k in expected), f"{name} not rebuilt from the checkpoint"


def test_a_gan_phase_change_keeps_the_psnr_model_and_a_new_psnr_model_restarts_the_gan_phase(tmp_path, stage):
    root = make_tree(tmp_path, psnr_steps=20, gan_steps=10)
    stage(root, PSNR)
    stage(root, GAN)
    psnr_model = (root / PSNR_DIR / "g_psnr.pt").read_bytes()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["sr"]["lambda_adv"] = 0.05  # a GAN-phase key: the PSNR stage's run is still this one
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = stage(root, PSNR)
    assert "resuming from" in out and (root / PSNR_DIR / "g_psnr.pt").read_bytes() == psnr_model
    out = stage(root, GAN)
    assert "starting fresh" in out and "resuming from" not in out

    params["train"]["sr"]["lr_psnr"] = 2.0e-3  # a PSNR-phase key: the GAN stage refuses the old PSNR model
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = stage(root, GAN, expect=1)
    assert str(PSNR_DIR / "g_psnr.pt") in out and "dvc repro train_sr_psnr" in out, out[-2000:]
    stage(root, PSNR)
    assert (root / PSNR_DIR / "g_psnr.pt").read_bytes() != psnr_model
    out = stage(root, GAN)
    assert "starting fresh" in out and "resuming from" not in out  # a new PSNR model is a new GAN run


def test_changed_params_start_fresh_and_resume_false_forces_it(tmp_path, stage):
    root = make_tree(tmp_path, psnr_steps=20, gan_steps=0)
    stage(root, PSNR)
    out = stage(root, PSNR)
    assert "resuming from" in out  # same params: nothing left to do but it resumes at the end
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["sr"]["lr_psnr"] = 2.0e-3  # not the default
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = stage(root, PSNR)
    assert "starting fresh" in out and "resuming from" not in out
    # A change of precision is a different run too: bf16 weights must not be handed out as an fp32 run's.
    for amp in (False, True):  # explicit values: what `auto` resolves to depends on the CPU
        params["train"]["amp"] = amp
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        out = stage(root, PSNR)
    assert "starting fresh" in out and "resuming from" not in out
    params["train"]["resume"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = stage(root, PSNR)
    assert "train.resume is false" in out


def test_bad_input_exits_nonzero_naming_the_file(tmp_path, stage):
    root = make_tree(tmp_path, psnr_steps=4, gan_steps=0)
    (root / "data/prepared/sr/train/lr.npy").write_bytes(b"\x00" * 100)
    for module in (PSNR, GAN):
        out = stage(root, module, expect=1)
        assert "data/prepared/sr/train/lr.npy" in out and "error:" in out
    assert not (root / PSNR_DIR / "g_psnr.pt").exists() and not (root / GAN_DIR / "g_gan.pt").exists()


def test_d_trains_at_its_own_learning_rate(tmp_path, stage):
    """train.sr.lr_d is D's Adam lr (TTUR), lr_gan G's: the checkpointed optimisers hold each."""
    from src.training.checkpoint import load_checkpoint
    root = make_tree(tmp_path, psnr_steps=4, gan_steps=2)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["sr"].update(lr_gan=2.0e-4, lr_d=3.0e-3)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage(root, PSNR)
    stage(root, GAN)
    optimizers = load_checkpoint(root / GAN_DIR / "checkpoint/last.pt")["state"]["optimizers"]
    assert [group["lr"] for group in optimizers["d"]["param_groups"]] == [3.0e-3]
    assert [group["lr"] for group in optimizers["g_gan"]["param_groups"]] == [2.0e-4]


def test_the_hr_denoiser_is_the_perceptual_network_when_chosen_and_is_recorded(tmp_path, stage):
    """train.sr.perceptual_network: hr_denoiser trains the denoising autoencoder on the HR train crops and uses
    its encoder in the GAN phase; the backbone is recorded in the model's meta and config.json (evaluate_sr copies
    it into metrics.json's backbones), and switching the network is a new GAN run."""
    root = make_tree(tmp_path, psnr_steps=4, gan_steps=2)
    stage(root, PSNR)
    stage(root, GAN)
    assert load_weights(root / GAN_DIR / "g_gan.pt")["meta"]["perceptual_backbone"] == "vgg19_random_init"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["sr"].update(perceptual_network="hr_denoiser", hr_denoiser_steps=3)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = stage(root, GAN)
    assert "starting fresh" in out and "hr_denoiser: 3 steps on the HR train crops" in out
    assert load_weights(root / GAN_DIR / "g_gan.pt")["meta"]["perceptual_backbone"] == "hr_denoiser_3steps"
    assert json.loads((root / GAN_DIR / "config.json").read_text())["perceptual_backbone"] == "hr_denoiser_3steps"


def test_d_is_scored_on_val_in_the_gan_phase_and_the_run_trains_as_without_it(tmp_path, stage):
    """train.sr.d_val_every logs val/d_auc and val/d_accuracy at its steps and puts the last scoring, with
    intervals, in the summary; scoring draws nothing and moves nothing, so the weights equal a run without it."""
    runs = {}
    for every in (0, 5):
        root = make_tree(tmp_path / f"every_{every}", psnr_steps=4, gan_steps=10)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["sr"]["d_val_every"] = every
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        stage(root, PSNR)
        stage(root, GAN)
        runs[every] = root
    for name in ("g_gan.pt", "checkpoint/last.pt"):
        a = torch.load(runs[0] / GAN_DIR / name, weights_only=False)
        b = torch.load(runs[5] / GAN_DIR / name, weights_only=False)
        flat = lambda obj, path="": (  # noqa: E731
            [(path, obj)] if isinstance(obj, torch.Tensor) else
            [x for k, v in obj.items() for x in flat(v, f"{path}/{k}")] if isinstance(obj, dict) else [])
        assert [p for p, _ in flat(a)] == [p for p, _ in flat(b)]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(flat(a), flat(b))), f"{name} differs"
    plots = runs[5] / GAN_DIR / "live/plots/metrics/val"
    rows = (plots / "d_auc.tsv").read_text().splitlines()[1:]
    # Scored after GAN steps 5 and 10 (global steps 8 and 13); a row carries the last step of its log window.
    assert [int(r.split("\t")[0]) for r in rows] == [9, 13]
    summary = json.loads((runs[5] / GAN_DIR / "live/metrics.json").read_text())
    for name in ("auc", "accuracy"):
        low, high = summary[f"val/d_final/{name}_ci95"]
        assert 0 <= low <= summary[f"val/d_final/{name}"] <= high <= 1
        assert summary[f"val/d_final/{name}"] == pytest.approx(summary["val"][f"d_{name}"], abs=1e-4)  # same D and G
    assert not (runs[0] / GAN_DIR / "live/plots/metrics/val").exists()
    assert "d_auc" not in json.loads((runs[0] / GAN_DIR / "live/metrics.json").read_text()).get("val", {})


def test_without_a_gan_phase_no_d_score_is_reported(tmp_path, stage):
    """gan_steps 0: there was no game, so the summary holds no D score (an untrained D's would be noise)."""
    root = make_tree(tmp_path, psnr_steps=4, gan_steps=0)
    stage(root, PSNR)
    stage(root, GAN)
    summary = json.loads((root / GAN_DIR / "live/metrics.json").read_text())
    assert "val/psnr_db/gan_model" in summary
    assert not any(key.startswith("val/d_final") for key in summary)


def test_the_gan_phase_can_drop_the_projection_and_clamp_while_the_psnr_model_keeps_it(tmp_path, stage):
    """train.sr.gan_data_consistency false / gan_clamp_output true change only the GAN phase's output layer: the
    PSNR model is not retrained and still re-degrades to its LR input exactly; the GAN model starts from its
    weights, is saved and rebuilt without the projection and clamped, and its output no longer re-degrades exactly.
    """
    root = make_tree(tmp_path, psnr_steps=6, gan_steps=4)
    stage(root, PSNR)
    psnr_model = (root / PSNR_DIR / "g_psnr.pt").read_bytes()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["sr"].update(gan_data_consistency=False, gan_clamp_output=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert "resuming from" in stage(root, PSNR)
    assert (root / PSNR_DIR / "g_psnr.pt").read_bytes() == psnr_model
    stage(root, GAN)
    psnr_meta = load_weights(root / PSNR_DIR / "g_psnr.pt")["meta"]
    gan_meta = load_weights(root / GAN_DIR / "g_gan.pt")["meta"]
    assert (psnr_meta["data_consistency"], psnr_meta["clamp_output"]) == (True, False)
    assert (gan_meta["data_consistency"], gan_meta["clamp_output"]) == (False, True)
    assert json.loads((root / GAN_DIR / "config.json").read_text())["data_consistency"] is False

    from src.training.sr_models import load_sr_generator
    lr = torch.from_numpy(np.load(root / "data/prepared/sr/val/lr.npy"))
    models = {phase: load_sr_generator(root / folder / f"g_{phase}.pt", 4, "kspace", phase, expected=None)
              for phase, folder in (("psnr", PSNR_DIR), ("gan", GAN_DIR))}
    with torch.no_grad():
        redegraded = {phase: degrade(model(lr), 4, "kspace") for phase, model in models.items()}
        assert models["gan"](lr).abs().max() <= 1
    assert torch.allclose(redegraded["psnr"], lr, atol=2e-6, rtol=0)
    # A few steps move the residual's measured band little, but well past the projection's rounding
    assert (redegraded["gan"] - lr).abs().max() > 5 * 2e-6
