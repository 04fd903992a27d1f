"""Fault injection into processes: two trainers on one output folder, a killed `dvc repro` (the trainer's parent),
Ctrl-C and kill -9 before a fresh run's first checkpoint. One trainer per output folder, no orphans, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from faults_helpers import (edit_params, last_line, leftovers, pid_alive, s2r_tree, snapshot, stage_env, start_stage,
                            wait_for)

from src import train_cyclegan, train_segmenter, train_sr

pytestmark = pytest.mark.faults

SR_OUT = Path("pipeline/train_sr")


def hold_lock(cwd: Path, lock: str, stage: str, out: str) -> tuple[subprocess.Popen, int]:
    """A process that takes `lock` as a trainer would and sleeps: (process, its pid once it holds the lock)."""
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from src.training.lock import output_lock
        with output_lock(Path({lock!r}), {stage!r}, Path({out!r})):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=stage_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "locked", line + proc.communicate(timeout=30)[0]
    return proc, proc.pid


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_kernel_drops_the_lock_when_its_holder_is_killed(tmp_path):
    """Cause 5: no stale-lock logic is needed, because flock dies with the process that holds it."""
    from src.training.lock import OutputLockedError, output_lock
    lock = tmp_path / "pipeline/train_sr/checkpoint/.trainer.lock"
    lock.parent.mkdir(parents=True)
    holder, pid = hold_lock(tmp_path, str(lock), "train_sr", "pipeline/train_sr")
    try:
        started = time.monotonic()
        with pytest.raises(OutputLockedError, match=rf"another train_sr \(pid {pid}\) is writing pipeline/train_sr"):
            with output_lock(lock, "train_sr", Path("pipeline/train_sr")):
                pass
        assert time.monotonic() - started < 1.0  # fails at once, does not wait
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with output_lock(lock, "train_sr", Path("pipeline/train_sr")):
            assert lock.read_text().strip() == str(os.getpid())
    finally:
        _stop(holder)


def test_second_train_sr_fails_at_once_naming_the_pid(sr_run, capsys):
    """Cause 5: while another train_sr holds pipeline/train_sr, a second one stops before touching anything."""
    edit_params(sr_run, lambda raw: raw["train"]["sr"].update(gan_steps=20))
    holder, pid = hold_lock(sr_run, str(SR_OUT / "checkpoint/.trainer.lock"), "train_sr", str(SR_OUT))
    try:
        before = snapshot(sr_run, str(SR_OUT))
        rc = train_sr.main(["--params", "params.yaml"])
        err = last_line(capsys.readouterr().err)
        assert rc == 1 and f"another train_sr (pid {pid}) is writing {SR_OUT}" in err, err
        assert snapshot(sr_run, str(SR_OUT)) == before
    finally:
        _stop(holder)
    assert train_sr.main(["--params", "params.yaml"]) == 0  # the lock died with its holder


def test_second_train_segmenter_fails_at_once_naming_the_pid(tmp_path, monkeypatch, capsys):
    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    before = snapshot(root, "pipeline/train_segmenter")
    holder, pid = hold_lock(root, "pipeline/train_segmenter/.trainer.lock", "train_segmenter",
                            "pipeline/train_segmenter")
    try:
        rc = train_segmenter.main(["--params", "params.yaml"])
        err = last_line(capsys.readouterr().err)
        assert rc == 1 and f"another train_segmenter (pid {pid}) is writing pipeline/train_segmenter" in err, err
        assert snapshot(root, "pipeline/train_segmenter") == before
    finally:
        _stop(holder)


def test_killed_parent_takes_its_trainer_along_and_a_second_run_never_trains_alongside(tmp_path, monkeypatch,
                                                                                        capsys):
    """Cause 5, the issue's scenario: kill -9 of `dvc repro` (here a stand-in parent process) during
    train_cyclegan. While the orphan would run, a second run fails at once naming its pid; the trainer dies with
    its parent (PR_SET_PDEATHSIG), so the run after that trains alone."""
    root = s2r_tree(tmp_path, steps=100000, checkpoint_every=5)
    monkeypatch.chdir(root)
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys\n"
                               "p = subprocess.Popen([sys.executable, '-m', 'src.train_cyclegan'],"
                               " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                               "print(p.pid, flush=True)\np.wait()"],
        cwd=root, env=stage_env(), stdout=subprocess.PIPE, text=True)
    trainer = int(parent.stdout.readline())
    try:
        wait_for(lambda: any((root / "pipeline/train_cyclegan").rglob("last.pt")), proc=parent,
                 what="the trainer's first checkpoint")
        edit_params(root, lambda raw: raw["train"]["cyclegan"].update(steps=10, cycle_warmup_steps=0))
        started = time.monotonic()
        rc = train_cyclegan.main(["--params", "params.yaml"])
        err = last_line(capsys.readouterr().err)
        assert rc == 1 and f"another train_cyclegan (pid {trainer}) is writing pipeline/train_cyclegan" in err, err
        assert time.monotonic() - started < 60

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        wait_for(lambda: not pid_alive(trainer), timeout=10, what=f"the orphaned trainer (pid {trainer}) to die")
        assert train_cyclegan.main(["--params", "params.yaml"]) == 0
    finally:
        if pid_alive(trainer):
            os.kill(trainer, signal.SIGKILL)
        _stop(parent)


def _fresh_run_interrupted(root: Path, sig: int) -> tuple[subprocess.Popen, str]:
    """Start a fresh (train.resume: false) train_sr over a finished run and send `sig` before its first checkpoint;
    returns the process and its output."""
    edit_params(root, lambda raw: (raw["train"].update(resume=False),
                                   raw["train"]["sr"].update(gan_steps=100000, checkpoint_every=100000)))
    log = root.parent / f"{root.name}-train_sr.log"
    tsv = root / SR_OUT / "live/plots/metrics/g/pixel.tsv"  # the GAN stage's (a fresh PSNR model would be refused)
    previous = tsv.read_bytes()
    proc = start_stage(root, "train_sr", log)
    wait_for(lambda: (root / SR_OUT / ".live-previous").exists() or not tsv.exists() or tsv.read_bytes() != previous,
             proc=proc, what="the fresh run to start")
    time.sleep(1.0)  # training steps, before any checkpoint
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc, log.read_text()


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, 130, "error: train_sr: interrupted"),
    # docker stop, Slurm and CI time limits and `timeout` send SIGTERM: cleaned up like Ctrl-C, exit 128 + 15.
    (signal.SIGTERM, 143, "error: train_sr: terminated (SIGTERM)"),
], ids=["ctrl_c", "sigterm"])
def test_interrupt_before_the_first_checkpoint_of_a_fresh_run_keeps_the_previous_run(sr_run, sig, code, message):
    keep = (str(SR_OUT / "checkpoint/last.pt"), str(SR_OUT / "live"), str(SR_OUT / "g_gan.pt"))
    before = snapshot(sr_run, *keep)
    proc, out = _fresh_run_interrupted(sr_run, sig)
    assert proc.returncode == code, out[-3000:]
    assert message in out, out[-3000:]
    if sig == signal.SIGTERM:
        assert "Traceback" not in out, out[-3000:]
    assert snapshot(sr_run, *keep) == before and leftovers(sr_run) == []


def test_kill_9_before_the_first_checkpoint_of_a_fresh_run_loses_nothing(sr_run, capsys):
    """A fresh run killed before its first checkpoint: the previous run's checkpoint stays, its logs are set aside
    (not deleted) and are put back by the next start, here one that then stops on a lowered step count."""
    keep = (str(SR_OUT / "checkpoint/last.pt"), str(SR_OUT / "live"))
    before = snapshot(sr_run, *keep)
    proc, _ = _fresh_run_interrupted(sr_run, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(sr_run, keep[0]) == {keep[0]: before[keep[0]]}
    assert not (sr_run / SR_OUT / "checkpoint/last.pt.tmp").exists()
    aside = {k.replace(".live-previous", "live"): v
             for k, v in snapshot(sr_run, str(SR_OUT / ".live-previous")).items()}
    assert aside == {k: v for k, v in before.items() if "/live/" in k}
    edit_params(sr_run, lambda raw: (raw["train"].update(resume=True),
                                         raw["train"]["sr"].update(gan_steps=4, checkpoint_every=10)))
    assert train_sr.main(["--params", "params.yaml"]) == 1  # stops on the step count, after recovering the logs
    assert "step 30" in last_line(capsys.readouterr().err)
    assert snapshot(sr_run, *keep) == before and leftovers(sr_run) == []


def test_sigterm_inside_a_staged_output_removes_the_staging_folder_and_keeps_the_old_output(tmp_path, monkeypatch,
                                                                                             capsys):
    # The evaluation stages write their folders through src.atomic.staged_dir: a SIGTERM half-way must leave
    # the previous folder as it was and no staging folder beside it.
    from src.atomic import staged_dir
    from src.stage import run_stage

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pipeline/evaluate_sr"
    out.mkdir(parents=True)
    (out / "part.json").write_text("previous\n")

    def recipe(params):
        with staged_dir(out) as staging:
            (staging / "part.json").write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode: never reached
        return {}

    assert run_stage("evaluate_sr", "test", recipe, [], reads_params=False) == 143
    assert "error: evaluate_sr: terminated (SIGTERM)" in last_line(capsys.readouterr().err)
    assert (out / "part.json").read_text() == "previous\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["evaluate_sr"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the stage restores the handler it replaced


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_sigterm_stops_the_downstream_training_processes_and_keeps_the_previous_baselines(tmp_path, monkeypatch):
    """evaluate.downstream_processes > 1: baselines trains its U-Nets in spawned processes. A SIGTERM to the stage
    (docker stop, Slurm, `timeout`) must end every one of them, exit 143 with one error line, and leave the
    previous pipeline/baselines as it was, with no staging folder."""
    from tests.test_evaluate_errors import make_tree, write_params as write_evaluation_params

    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path)
    write_evaluation_params(tmp_path)
    log = tmp_path.parent / f"{tmp_path.name}-baselines.log"
    done = start_stage(tmp_path, "baselines", log, "--params", "params.yaml")
    assert done.wait(timeout=300) == 0, log.read_text()[-2000:]
    before = snapshot(tmp_path, "pipeline/baselines")
    edit_params(tmp_path, lambda raw: raw["evaluate"].update(downstream_processes=2, downstream_steps=100000))
    proc = start_stage(tmp_path, "baselines", log, "--params", "params.yaml")
    try:
        # Both workers training: their progress bars (they write to the stage's stderr) have started.
        wait_for(lambda: log.read_text().count("/100000") >= 2, timeout=180, proc=proc,
                 what="the training processes to start")
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=15, what=f"the workers {workers} to end")
    assert "error: baselines: terminated (SIGTERM)" in last_line(log.read_text())
    assert snapshot(tmp_path, "pipeline/baselines") == before
    assert leftovers(tmp_path) == []
