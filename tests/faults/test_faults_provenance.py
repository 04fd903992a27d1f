"""Models trusted by their file name (issue 23, class 1): a model trained on other data or params is refused.

Before, every loader scored whatever file sat at a model's path: a GAN model copied in from another experiment
(other `train.sr`), a translator trained before `prepare` was re-run on other subjects, a judge from a baselines
run with another budget, or a segmenter trained with other `segmenter` params were all used with exit 0 and
reported under this run's params. Each saved model now records the fingerprint of the prepared train split and
of the params it was trained on (src/training/provenance.py); the loaders recompute both and refuse a mismatch,
naming the file, what differs and the stage to re-run, before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from faults_helpers import edit_params, last_line, leftovers, provenance_in, s2r_tree, snapshot

from src import evaluate_sim2real, evaluate_sr, train_cyclegan
from src.training.checkpoint import load_weights
from src.training.provenance import META_KEY, judge_provenance, sr_provenance, translator_provenance
from tests.test_evaluate_errors import G_GAN, G_PSNR, G_SIM2REAL, save_sr_model, save_translator

pytestmark = pytest.mark.faults
OUTPUTS = ("pipeline/evaluate_sr", "pipeline/evaluate_sim2real", "pipeline/baselines")
JUDGE = Path("pipeline/baselines/judge.pt")


@pytest.fixture
def tree(evaluated, tmp_path, monkeypatch):
    root = tmp_path / "w"
    shutil.copytree(evaluated, root)
    monkeypatch.chdir(root)
    return root


def other_experiment(tree: Path, tmp_path: Path, edit=None, data=None) -> Path:
    """A copy of `tree` as another experiment's workspace: its params edited by `edit(raw)`, its prepared
    arrays by `data(root)` (as if `prepare` had been re-run on other subjects)."""
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    if edit:
        edit_params(other, edit)
    if data:
        data(other)
    return other


def other_subjects(split: str):
    def change(root: Path) -> None:
        path = root / split / "hr.npy" if "sr" in split.split("/") else root / split / "sim.npy"
        array = np.load(path)
        np.save(path, np.roll(array, 1, axis=0) * 0.9)  # other slices, same shapes
    return change


def expect_refusal(root: Path, capsys, stage, *culprits: str) -> str:
    before = snapshot(root, *OUTPUTS)
    rc = stage.main(["--params", "params.yaml"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1, err
    assert err.startswith(f"error: {stage.__name__.rsplit('.', 1)[1]}: "), err
    for culprit in culprits:
        assert culprit in err, f"{culprit!r} not in: {err}"
    assert snapshot(root, *OUTPUTS) == before
    assert leftovers(root) == []
    return err


def test_gan_model_of_an_experiment_with_other_sr_params_is_refused(tree, tmp_path, capsys):
    # Was exit 0: another lambda_adv's GAN model scored and reported under this run's params.
    other = other_experiment(tree, tmp_path, lambda raw: raw["train"]["sr"].update(lambda_adv=0.05))
    save_sr_model(tree / G_GAN, seed=3, provenance=provenance_in(other, sr_provenance, "gan"))
    err = expect_refusal(tree, capsys, evaluate_sr, str(G_GAN), "train.sr", "`dvc repro train_sr`")
    assert "prepared data" not in err, "the data is the same: only the params may be named"


def test_sr_model_trained_before_prepare_was_rerun_on_other_subjects_is_refused(tree, tmp_path, capsys):
    # Was exit 0: a PSNR model whose train split may hold this run's test subjects, scored on them.
    other = other_experiment(tree, tmp_path, data=other_subjects("data/prepared/sr/train"))
    save_sr_model(tree / G_PSNR, provenance=provenance_in(other, sr_provenance, "psnr"))
    err = expect_refusal(tree, capsys, evaluate_sr, str(G_PSNR), "data/prepared/sr/train", "`dvc repro train_sr_psnr`")
    assert "train.sr" not in err, "the params are the same: only the data may be named"


def test_translator_trained_on_other_prepared_data_is_refused(tree, tmp_path, capsys):
    other = other_experiment(tree, tmp_path, data=other_subjects("data/prepared/sim2real/train"))
    save_translator(tree / G_SIM2REAL, provenance=provenance_in(other, translator_provenance, "classical"))
    expect_refusal(tree, capsys, evaluate_sim2real, str(G_SIM2REAL), "data/prepared/sim2real/train",
                   "`dvc repro train_cyclegan@classical`")


def test_translator_of_an_experiment_with_other_loss_weights_is_refused(tree, tmp_path, capsys):
    # `dvc exp run -S train.lambda_cycle=10` keeps its models in its own workspace; one copied back over the
    # main run's file was scored as the main run's translator.
    other = other_experiment(tree, tmp_path, lambda raw: raw["train"].update(lambda_cycle=10.0))
    save_translator(tree / G_SIM2REAL, provenance=provenance_in(other, translator_provenance, "classical"))
    expect_refusal(tree, capsys, evaluate_sim2real, str(G_SIM2REAL), "train.lambda_*, train.cyclegan")


def test_judge_of_a_baselines_run_with_another_budget_is_refused(tree, capsys):
    # The judge's features score realism (SWD/FD companions): one trained for other steps changes every figure.
    blob = load_weights(tree / JUDGE)
    edit_params(tree, lambda raw: raw["evaluate"].update(downstream_steps=2))  # params now ask for 2 steps
    assert blob["meta"][META_KEY]["params"] != provenance_in(tree, judge_provenance)["params"]
    expect_refusal(tree, capsys, evaluate_sr, str(JUDGE), "evaluate.downstream_steps", "`dvc repro baselines`")


def test_model_saved_without_provenance_is_refused(tree, capsys):
    # A file written by an older version of the code says nothing about what it was trained on.
    save_sr_model(tree / G_GAN, seed=3)
    expect_refusal(tree, capsys, evaluate_sr, str(G_GAN), "records no training provenance", "`dvc repro train_sr`")


def test_logging_and_evaluation_params_do_not_make_a_model_stale(tree, capsys):
    # What is recorded is what shapes the model: how often it logged, and every evaluate key but the judge's
    # budget, may change without a retrain.
    edit_params(tree, lambda raw: (raw["train"]["sr"].update(log_every=7, sample_every=9, checkpoint_every=11),
                                   raw["train"]["cyclegan"].update(log_every=3),
                                   raw["evaluate"].update(n_examples=1, swd_directions=4)))
    for stage in (evaluate_sr, evaluate_sim2real):
        assert stage.main(["--params", "params.yaml"]) == 0, capsys.readouterr().err
    assert leftovers(tree) == []


def test_cyclegan_refuses_a_segmenter_trained_with_other_segmenter_params(tmp_path, monkeypatch, capsys):
    # The frozen segmenter of the semantic term: one from another segmenter recipe was used with exit 0.
    root = s2r_tree(tmp_path)
    edit_params(root, lambda raw: raw["segmenter"].update(steps=3))  # segmenter.pt was trained for 2 steps
    monkeypatch.chdir(root)
    rc = train_cyclegan.main(["--params", "params.yaml", "--input", "sim"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1 and "pipeline/train_segmenter/segmenter.pt" in err and "seed, segmenter" in err, err
    assert "`dvc repro train_segmenter`" in err, err
    assert not (root / "pipeline/train_cyclegan/sim").exists() or not list(
        (root / "pipeline/train_cyclegan/sim").glob("*.pt"))
    assert leftovers(root) == []
