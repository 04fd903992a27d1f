"""DDP under torchrun: 2 CPU processes with gloo, the real training stages on tiny networks (seconds each).

Each run goes through tests/distributed/audited_stage.py, which records every write a rank
makes inside the workspace and dumps each rank's networks at the end of each phase.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.faults.faults_helpers import edit_params as edit_params_file, s2r_tree, sr_tree

REPO = Path(__file__).resolve().parents[2]
WRAPPER = Path(__file__).with_name("audited_stage.py")
# 2 ranks x half the batch against 1 rank x the whole batch, fp32: the same global batch and
# gradient up to the order of float sums (DDP averages two half-batch means). Adam turns a
# float-noise gradient into an update of up to lr (1e-3 here) per step, and a parameter whose true
# gradient is ~0 (the last conv's bias, whose DC the data-consistency layer replaces) gets nothing
# but noise: its weights may differ by a good part of one step, and how much depends on the CPU's
# kernels (max 2.7e-5 on an EPYC without AVX512-BF16, 1.2e-4 / 2.3e-4 on one with it). So the
# comparison reads the 99.9th percentile of |difference| over all weights: 1.5e-8 measured on both,
# while a different global batch moves almost every weight by ~lr.
SAME_RUN_ATOL = 1e-5


def edit_params(root: Path, edit) -> Path:
    edit_params_file(root, edit)
    return root


def launch(workspace: Path, out: Path, stage: str, *args: str, nproc: int = 2, **popen) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "REPO": str(REPO), "OMP_NUM_THREADS": "1", "DDP_TEST_OUT": str(out),
           "DVCLIVE_TEST": ""}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return subprocess.Popen([*launcher, str(WRAPPER), stage, *args], cwd=workspace, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    return out


def run(workspace: Path, out: Path, stage: str, *args: str, nproc: int = 2) -> str:
    return finish(launch(workspace, out, stage, *args, nproc=nproc))


def run_sr(workspace: Path, out: Path, nproc: int = 2) -> str:
    """train_sr_psnr then train_sr (phase 2 from phase 1's model), as dvc.yaml runs them."""
    return run(workspace, out, "src.train_sr_psnr", nproc=nproc) + run(workspace, out, "src.train_sr", nproc=nproc)


def nets(out: Path, rank: int, step: int) -> dict:
    return torch.load(out / f"nets_rank{rank}_step{step}.pt", weights_only=True)


def flat(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state dict, by its path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in flat(value, f"{prefix}/{i}").items()}
    return {}


def assert_identical(a: dict, b: dict, what: str) -> None:
    a, b = flat(a), flat(b)
    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {differ[:5]}"


def weight_difference(a: dict, b: dict) -> float:
    """The 99.9th percentile of |a - b| over every floating-point weight and buffer (see SAME_RUN_ATOL)."""
    a, b = flat(a["modules"]), flat(b["modules"])
    assert a.keys() == b.keys()
    diffs = torch.cat([(a[k].double() - b[k].double()).abs().flatten() for k in a if a[k].is_floating_point()])
    return torch.quantile(diffs, 0.999).item()


def writes(out: Path, rank: int) -> list[str]:
    log = out / f"writes_rank{rank}.log"
    return log.read_text().splitlines() if log.exists() else []


def deterministic(raw: dict) -> None:
    """No per-rank random draws inside a step (DiffAugment, instance noise): only then can N not matter."""
    raw["train"]["sr"].update(diffaugment="", instance_noise=0.0)


def test_sr_ranks_hold_identical_weights_and_only_rank_0_writes(tmp_path):
    """DiffAugment, spectral norm and R1 on: after both phases every parameter and buffer (spectral
    norm's power-iteration vectors, the EMA) is bit-identical on the two ranks."""
    root = edit_params(sr_tree(tmp_path / "ws", psnr_steps=12, gan_steps=8, checkpoint_every=5),
                       lambda raw: raw["train"]["sr"].update(spectral_norm=True, r1_gamma=1.0, diffaugment="color,translation"))
    out = tmp_path / "out"
    run_sr(root, out)
    for step in (12, 20):
        assert_identical(nets(out, 0, step), nets(out, 1, step), f"ranks differ after step {step}")
    assert any(name.endswith("_u") or "_u" in name for name in flat(nets(out, 0, 20)["modules"])), "no spectral norm"
    assert writes(out, 1) == [], "rank 1 wrote into the workspace"
    rank0 = "\n".join(writes(out, 0))
    assert "pipeline/train_sr/checkpoint/last.pt" in rank0 and "pipeline/train_sr/live" in rank0
    checkpoint = torch.load(root / "pipeline/train_sr/checkpoint/last.pt", weights_only=True)
    assert len(checkpoint["rank_rng"]) == 2
    assert not torch.equal(checkpoint["rank_rng"][0]["torch"], checkpoint["rank_rng"][1]["torch"]), \
        "both ranks drew the same augmentation stream"


def test_sr_two_ranks_with_half_batches_equal_one_rank_with_the_whole_batch(tmp_path):
    one = edit_params(sr_tree(tmp_path / "one", psnr_steps=10, gan_steps=6), deterministic)
    two = edit_params(sr_tree(tmp_path / "two", psnr_steps=10, gan_steps=6), deterministic)
    run_sr(one, tmp_path / "out1", nproc=1)
    run_sr(two, tmp_path / "out2", nproc=2)
    for step in (10, 16):
        single, ddp = nets(tmp_path / "out1", 0, step), nets(tmp_path / "out2", 0, step)
        assert weight_difference(single, ddp) <= SAME_RUN_ATOL, step
    # and the comparison can fail: a different global batch gives different weights (phase 1 shows it)
    three = edit_params(sr_tree(tmp_path / "three", psnr_steps=10, gan_steps=6),
                        lambda raw: (deterministic(raw), raw["train"]["sr"].update(batch_size=4)))
    run(three, tmp_path / "out3", "src.train_sr_psnr", nproc=2)
    assert weight_difference(nets(tmp_path / "out1", 0, 10), nets(tmp_path / "out3", 0, 10)) > 10 * SAME_RUN_ATOL


def test_ddp_run_killed_and_resumed_finishes_identically(tmp_path):
    """SIGKILL to torchrun and both ranks of train_sr_psnr after its first checkpoint, then a resumed run: the same
    PSNR model bit for bit. (train_sr resumes through the same code; a resume of it under DDP is the next test.)"""
    # The kill lands after the first checkpoint (step 20) and well before the end: a tiny step takes
    # milliseconds, so the stage needs hundreds of them left after the checkpoint.
    straight = sr_tree(tmp_path / "straight", psnr_steps=300, gan_steps=0, checkpoint_every=20)
    run(straight, tmp_path / "out_straight", "src.train_sr_psnr")

    killed = sr_tree(tmp_path / "killed", psnr_steps=300, gan_steps=0, checkpoint_every=20)
    proc = launch(killed, tmp_path / "out_killed", "src.train_sr_psnr")
    checkpoint = killed / "pipeline/train_sr_psnr/checkpoint/last.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.1)  # past the checkpoint, so there is work to redo
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
    proc.communicate()
    assert not (killed / "pipeline/train_sr_psnr/g_psnr.pt").exists(), "finished before the kill; raise psnr_steps"

    log = run(killed, tmp_path / "out_resumed", "src.train_sr_psnr")
    assert "resuming from" in log
    a = torch.load(straight / "pipeline/train_sr_psnr/g_psnr.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "pipeline/train_sr_psnr/g_psnr.pt", weights_only=True)["state_dict"]
    assert_identical(a, b, "g_psnr.pt differs after SIGKILL + resume under DDP")


def test_a_single_process_checkpoint_resumes_under_ddp(tmp_path):
    """Both phases in one process, then train.sr.gan_steps raised (a resume of train_sr) in two: the same
    weights as one process doing it all, to the N-independence tolerance."""
    split = edit_params(sr_tree(tmp_path / "split", psnr_steps=10, gan_steps=3), deterministic)
    run_sr(split, tmp_path / "out_a", nproc=1)
    edit_params(split, lambda raw: raw["train"]["sr"].update(gan_steps=6))
    log = run(split, tmp_path / "out_b", "src.train_sr", nproc=2)
    assert "resuming from" in log and "written by 1 process(es), this run has 2" in log
    whole = edit_params(sr_tree(tmp_path / "whole", psnr_steps=10, gan_steps=6), deterministic)
    # phase 1 is the same run in both trees (same params, one process): its outputs are copied, not retrained
    shutil.copytree(split / "pipeline/train_sr_psnr", whole / "pipeline/train_sr_psnr")
    run(whole, tmp_path / "out_c", "src.train_sr", nproc=1)
    assert weight_difference(nets(tmp_path / "out_b", 0, 16), nets(tmp_path / "out_c", 0, 16)) <= SAME_RUN_ATOL


def test_segmenter_and_cyclegan_ranks_agree_and_only_rank_0_writes(tmp_path):
    """The U-Net's batch-norm statistics (broadcast from rank 0 on CPU), the CycleGAN's four
    networks and its global image pools are identical on both ranks."""
    root = edit_params(s2r_tree(tmp_path / "ws", steps=8, checkpoint_every=4),
                       lambda raw: (raw["segmenter"].update(steps=4), raw["train"]["cyclegan"].update(batch_size=2)))
    out = tmp_path / "out"
    run(root, out, "src.train_segmenter")
    assert_identical(nets(out, 0, 4), nets(out, 1, 4), "segmenter ranks differ")
    run(root, out, "src.train_cyclegan", "--input", "sim")
    assert_identical(nets(out, 0, 8), nets(out, 1, 8), "CycleGAN ranks differ (networks or pools)")
    assert flat(nets(out, 0, 8)["extras"]["pool_real"])["/images"].shape[0] == 2, "the pool never filled"
    assert writes(out, 1) == [], "rank 1 wrote into the workspace"
    assert "pipeline/train_cyclegan/sim/g_sim2real.pt" in "\n".join(writes(out, 0))
