"""Fault injection into training stages: checkpoints that cannot or must not be resumed, a full disk, a run that
diverges before its first checkpoint, bad prepared data. Each stops with one error naming the file and stage,
exit 1, and the previous run's checkpoint, logs and models left as they were."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_helpers import edit_params, last_line, leftovers, s2r_tree, snapshot

from src import train_cyclegan, train_segmenter, train_sr

pytestmark = pytest.mark.faults

OUT = Path("pipeline/train_sr")
CHECKPOINT = OUT / "checkpoint/last.pt"
ALL = (str(OUT),)
KEPT = (str(CHECKPOINT), str(OUT / "live"), "pipeline/train_sr_psnr/g_psnr.pt", str(OUT / "g_gan.pt"),
        str(OUT / "config.json"))


def run_sr(capsys) -> tuple[int, str]:
    rc = train_sr.main(["--params", "params.yaml"])
    return rc, last_line(capsys.readouterr().err)


def set_sr(**values):
    return lambda raw: raw["train"]["sr"].update(values)


# ------------------------------------------------------------------ checkpoints that must not be resumed


def test_checkpoint_past_the_requested_steps_is_an_error(sr_run, capsys):
    """Cause 4: lowering train.sr.gan_steps after a longer run. Before the fix the stage resumed at step 30 of 24,
    trained nothing and wrote the 30-step model as the result of a 24-step run, exit 0."""
    edit_params(sr_run, set_sr(gan_steps=4))
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1, err
    assert err.startswith(f"error: train_sr: {CHECKPOINT}: ") and "step 30" in err and "24 steps" in err, err
    assert "train.resume: false" in err, err
    assert snapshot(sr_run, *ALL) == before and leftovers(sr_run) == []


def test_checkpoint_past_the_requested_steps_with_no_gan_phase_left(sr_run, capsys):
    """Cause 4: train.sr.gan_steps lowered to 0 after a GAN run: no phase is trained. Lost data (issue 23): the
    check ran on leaving, after g_psnr.pt and g_gan.pt had been rewritten; now it runs before anything is written."""
    edit_params(sr_run, set_sr(gan_steps=0))
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1, err
    assert str(CHECKPOINT) in err and "step 30" in err and "train.resume: false" in err, err
    assert snapshot(sr_run, *ALL) == before and leftovers(sr_run) == []


def test_checkpoint_that_does_not_fit_the_model(sr_run, capsys):
    """Cause 7: right fingerprint, wrong architecture (code changed). Before: a bare RuntimeError traceback."""
    blob = torch.load(CHECKPOINT, weights_only=True)
    d_state = blob["state"]["modules"]["d"]
    key = next(k for k, v in d_state.items() if v.ndim == 4)
    d_state[key] = torch.zeros(3, 3, 3, 3)
    torch.save(blob, CHECKPOINT)
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1, err
    assert err.startswith(f"error: train_sr: {CHECKPOINT}: "), err
    assert "delete it" in err and "train.resume: false" in err and "train_sr" in err, err
    assert snapshot(sr_run, *ALL) == before and leftovers(sr_run) == []


def test_truncated_checkpoint(sr_run, capsys):
    CHECKPOINT.write_bytes(CHECKPOINT.read_bytes()[:1000])
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1 and str(CHECKPOINT) in err and "corrupt or unreadable" in err and "train.resume: false" in err, err
    assert snapshot(sr_run, *ALL) == before and leftovers(sr_run) == []


class _Payload:
    def __reduce__(self):
        return os.system, ("touch PWNED",)


def test_malicious_pickle_checkpoint_is_not_executed(sr_run, capsys):
    torch.save({"fingerprint": "x", "state": _Payload()}, CHECKPOINT)
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1 and str(CHECKPOINT) in err and "corrupt or unreadable" in err, err
    assert not (sr_run / "PWNED").exists()
    assert snapshot(sr_run, *ALL) == before


def test_malicious_pickle_segmenter_is_not_executed(tmp_path, monkeypatch, capsys):
    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    torch.save({"state_dict": _Payload(), "meta": {}}, "pipeline/train_segmenter/segmenter.pt")
    rc = train_cyclegan.main(["--params", "params.yaml"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1 and "pipeline/train_segmenter/segmenter.pt" in err and "corrupt or unreadable" in err, err
    assert not (root / "PWNED").exists()
    assert not list((root / "pipeline/train_cyclegan").glob("*.pt")) and leftovers(root) == []


# ------------------------------------------------------------------ nothing lost


def _disk_full_on(name_part: str, monkeypatch):
    """torch.save raises ENOSPC, after writing a few bytes, when the target's name contains `name_part`."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        name = str(getattr(f, "name", f))
        if name_part not in name:
            return real_save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 half a file")
        else:
            f.write(b"PK\x03\x04 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_while_writing_the_checkpoint(sr_run, capsys, monkeypatch):
    """The previous last.pt stays intact and loadable, no temporary file is left, the error says the disk is full."""
    edit_params(sr_run, set_sr(gan_steps=20))  # resumes at step 30 and checkpoints at 40
    before = snapshot(sr_run, *KEPT[:1], *KEPT[2:])
    _disk_full_on("last.pt", monkeypatch)
    rc, err = run_sr(capsys)
    assert rc == 1, err
    assert err.startswith(f"error: train_sr: {CHECKPOINT}") and "disk is full" in err, err
    assert snapshot(sr_run, *KEPT[:1], *KEPT[2:]) == before
    assert torch.load(CHECKPOINT, weights_only=True)["state"]["step"] == 30
    assert leftovers(sr_run) == []


def test_disk_full_while_writing_a_model(sr_run, capsys, monkeypatch):
    _disk_full_on("g_gan.pt", monkeypatch)
    before = snapshot(sr_run, str(OUT / "g_gan.pt"), str(CHECKPOINT))
    rc, err = run_sr(capsys)
    assert rc == 1 and str(OUT / "g_gan.pt") in err and "disk is full" in err, err
    assert snapshot(sr_run, str(OUT / "g_gan.pt"), str(CHECKPOINT)) == before and leftovers(sr_run) == []


def test_fresh_run_diverging_before_its_first_checkpoint_keeps_the_previous_run(sr_run, capsys, monkeypatch):
    """A fresh start (train.resume: false) whose losses turn NaN before its first checkpoint: the previous run's
    checkpoint, logs and models stay. Before the fix dvclive had already emptied live/."""
    import src.training.run as run_module
    real_fit = run_module.fit

    def nan_fit(state, step_fn, *args, **kwargs):
        return real_fit(state, lambda step: {k: float("nan") for k in step_fn(step)}, *args, **kwargs)

    monkeypatch.setattr(run_module, "fit", nan_fit)
    edit_params(sr_run, lambda raw: (raw["train"].update(resume=False, max_nan_retries=1)))
    before = snapshot(sr_run, *KEPT)
    rc, err = run_sr(capsys)
    assert rc == 1 and "non-finite" in err and "lower the learning rate" in err, err
    assert snapshot(sr_run, *KEPT) == before and leftovers(sr_run) == []


def test_crop_larger_than_the_prepared_images(sr_run, capsys):
    edit_params(sr_run, set_sr(crop_size=64))
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1 and "train.sr.crop_size" in err, err
    assert snapshot(sr_run, *ALL) == before


def test_corrupt_prepared_split(sr_run, capsys):
    Path("data/prepared/sr/train/hr.npy").write_bytes(b"\x00" * 100)
    before = snapshot(sr_run, *ALL)
    rc, err = run_sr(capsys)
    assert rc == 1 and "data/prepared/sr/train/hr.npy" in err, err
    assert snapshot(sr_run, *ALL) == before


def test_segmenter_on_prepared_data_with_nan(tmp_path, monkeypatch, capsys):
    root = s2r_tree(tmp_path)
    monkeypatch.chdir(root)
    path = Path("data/prepared/sim2real/train/sim.npy")
    sim = np.load(path)
    sim[0, 0, 3, 3] = np.nan
    np.save(path, sim)
    before = snapshot(root, "pipeline/train_segmenter")
    rc = train_segmenter.main(["--params", "params.yaml"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1 and str(path) in err and "NaN" in err, err
    assert snapshot(root, "pipeline/train_segmenter") == before and leftovers(root) == []
