"""Helpers of the fault-injection suite: tiny stage trees, byte snapshots of outputs, leftovers, stage runs.

A plain module with a unique name (not conftest.py) so the test modules import it directly.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from src.config import load_params
from src.training.provenance import META_KEY, segmenter_provenance

REPO = Path(__file__).resolve().parents[2]
# What a killed or failed stage must never leave behind: staging folders (src/atomic.py), half-written
# files, set-aside training logs (src/training/run.py).
LEFTOVER_PATTERNS = (".*-tmp-*", ".*-old", "*.tmp", ".live-previous*")


def repo_params() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))


def write_params(root: Path, raw: dict, name: str = "params.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def snapshot(root: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under `paths` (relative to `root`), keyed by relative path; trainers' lock files
    (src/training/lock.py), which are not outputs, left out."""
    files = {}
    for rel in paths:
        base = root / rel
        for f in sorted([base] if base.is_file() else base.rglob("*") if base.exists() else []):
            if f.is_file() and f.name != ".trainer.lock":
                files[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return files


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for pattern in LEFTOVER_PATTERNS for p in root.rglob(pattern))


def last_line(text: str) -> str:
    """A stage's error: its output from the last line that starts with `error: ` (after any progress bar) on,
    lines joined (a reader's message may span several); else the last line."""
    text = text.replace("\r", "\n").strip()
    if "error: " in text:
        return " ".join(text[text.rindex("error: "):].splitlines())
    return text.splitlines()[-1] if text else ""


def stage_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DVCLIVE_TEST": ""}


def start_stage(cwd: Path, module: str, log: Path, *args: str) -> subprocess.Popen:
    """`python -m src.<module>` in `cwd`, stdout and stderr into the file `log` (a pipe could fill and block it)."""
    with open(log, "w") as out:
        # A shell's background job (`make test &`) starts with SIGINT ignored, and Python then never installs
        # its Ctrl-C handler: restore the default so the stage sees SIGINT as a user's Ctrl-C would be seen.
        return subprocess.Popen([sys.executable, "-m", f"src.{module}", *args], cwd=cwd, env=stage_env(),
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, timeout: float = 120.0, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by its new parent, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# ------------------------------------------------------------------ tiny trees


def weights_manifest(root: Path) -> None:
    """An offline `weights` stage output: every backbone unavailable (random-init fallbacks)."""
    weights = root / "pipeline/weights"
    weights.mkdir(parents=True, exist_ok=True)
    (weights / "manifest.json").write_text(json.dumps(
        {name: {"status": "unavailable", "description": name, "reason": "fault suite: offline"}
         for name in ("vgg19", "inception_fid", "resnet18")}))


def save_split(folder: Path, **arrays: np.ndarray) -> None:
    """One prepared split as prepare writes it: <folder>/<key>.npy per array."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)


def sr_tree(root: Path, psnr_steps: int = 20, gan_steps: int = 10, checkpoint_every: int = 10) -> Path:
    """Prepared SR data (32 px, x4) and params for a train_sr run of about a second."""
    from src.data.degrade import degrade, naive_upsample

    gen = torch.Generator().manual_seed(0)
    sr_dir = root / "data/prepared/sr"
    sr_dir.mkdir(parents=True)
    for split, n in (("train", 6), ("val", 3)):
        hr = torch.rand(n, 1, 32, 32, generator=gen) * 2 - 1
        lr = degrade(hr, 4, "kspace")
        save_split(sr_dir / split, hr=hr.numpy(), lr=lr.numpy(), naive=naive_upsample(lr, 4, "kspace").numpy())
    (sr_dir / "meta.json").write_text(json.dumps({"scale": 4, "degradation": "kspace"}))
    weights_manifest(root)
    raw = repo_params()
    raw["train"].update(device="cpu", amp=False)
    raw["train"]["sr"].update(crop_size=16, batch_size=2, g_blocks=1, g_channels=4, d_channels=4, d_layers=2,
                              psnr_steps=psnr_steps, gan_steps=gan_steps, log_every=5, sample_every=1000,
                              checkpoint_every=checkpoint_every, vgg_layers=["relu1_1"])
    write_params(root, raw)
    return root


CLASS_NAMES = ["background", "csf", "gm", "wm"]


def s2r_tree(root: Path, steps: int = 20, checkpoint_every: int = 10) -> Path:
    """Prepared sim-to-real data (32 px), a tiny frozen segmenter and params for train_segmenter / train_cyclegan."""
    from src.models.segmenter import build_unet
    from src.training.checkpoint import save_weights

    rng = np.random.default_rng(0)
    s2r = root / "data/prepared/sim2real"
    s2r.mkdir(parents=True)
    row = np.repeat(np.arange(4, dtype=np.uint8), [4, 4, 8, 16])
    for split, n in (("train", 6), ("val", 3)):
        labels = np.broadcast_to(np.roll(row, rng.integers(0, 8)), (n, 32, 32)).copy()
        sim = (np.array([-1.0, 0.6, -0.2, 0.3], np.float32)[labels] + rng.normal(0, .05, labels.shape)).clip(-1, 1)
        real = (np.array([-1.0, -0.6, 0.1, 0.7], np.float32)[labels] + rng.normal(0, .05, labels.shape)).clip(-1, 1)
        sim = sim[:, None].astype(np.float32)
        save_split(s2r / split, sim=sim, sim_labels=labels, real=real[:, None].astype(np.float32),
                 real_labels=labels, classical=sim)
    (s2r / "meta.json").write_text(json.dumps({"written": True, "class_names": CLASS_NAMES}))
    weights_manifest(root)
    raw = repo_params()
    raw["segmenter"].update(encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 4], steps=2, batch_size=2,
                            crop_size=16)
    raw["train"].update(device="cpu", amp=False)
    raw["evaluate"]["downstream_processes"] = 1  # no spawned training processes for 2-step U-Nets
    raw["train"]["cyclegan"].update(crop_size=16, batch_size=1, g_blocks=1, g_channels=4, d_channels=4, d_layers=2,
                                    d_downsample=1,
                                    steps=steps, decay_start=0, pool_size=2, log_every=5, sample_every=1000,
                                    checkpoint_every=checkpoint_every, cycle_warmup_steps=steps // 2)
    write_params(root, raw)
    torch.manual_seed(0)
    unet, weights = build_unet("resnet18", 3, [16, 8, 4], 4, None)
    save_weights(root / "pipeline/train_segmenter/segmenter.pt", unet,
                 {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4], "n_classes": 4,
                  "encoder_weights": weights, "class_names": CLASS_NAMES, "trained_on": "fault suite",
                  META_KEY: provenance_in(root, segmenter_provenance)})
    return root


def provenance_in(root: Path, provenance, *args) -> dict:
    """What a model trained in the tree at `root` records (src/training/provenance.py): `provenance(params, *args)`
    of root's params.yaml and prepared data, for files the tests write in place of a stage's."""
    with contextlib.chdir(root):
        return provenance(load_params("params.yaml"), *args).as_meta()


def edit_params(root: Path, edit) -> Path:
    """Apply `edit(raw)` to root/params.yaml in place."""
    raw = yaml.safe_load((root / "params.yaml").read_text())
    edit(raw)
    return write_params(root, raw)


# `prepare` on a user folder: shared by the input and the scanner-geometry cases.
PREPARE_OUTPUTS = ("data/prepared", "pipeline/prepare")


def run_prepare(root: Path, capsys, **data) -> tuple[int, str]:
    """`prepare` on tests/data's base params with `data` overrides: (exit code, last stderr line).

    One reading process unless `workers` is given: a bad file beside the good one would otherwise start a pool
    of two (a forkserver importing torch, about 4 s a case); a case with `workers=2` covers the pool's errors."""
    from src import prepare
    from tests.data.datatest_helpers import base_params

    raw = base_params()
    raw["data"].update({"workers": 1, **data})
    rc = prepare.main(["--params", str(write_params(root, raw))])
    return rc, last_line(capsys.readouterr().err)


def expect_failure(root: Path, capsys, *culprits: str, **data) -> str:
    """Run prepare: exit 1, one `error: prepare:` line naming every culprit, outputs untouched, nothing left over."""
    before = snapshot(root, *PREPARE_OUTPUTS)
    assert before, "the baseline has outputs to protect"
    rc, err = run_prepare(root, capsys, **data)
    assert rc == 1, err
    assert err.startswith("error: prepare: "), err
    for culprit in culprits:
        assert culprit in err, f"{culprit!r} not in {err!r}"
    assert snapshot(root, *PREPARE_OUTPUTS) == before
    assert leftovers(root) == []
    return err
