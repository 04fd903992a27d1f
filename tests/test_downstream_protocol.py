"""The downstream comparison of `evaluate` (CyCADA protocol): three segmenters, one recipe and budget.

`src.evaluate.fit_segmenter` is replaced by a recorder, so these tests see exactly what each
of sim_only, translated_sim and real_oracle is trained with, on the tiny tree of
test_evaluate_errors.py.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_evaluate_errors import G_SIM2REAL, make_tree, one_thread, write_params  # noqa: F401 (autouse fixture)

from src import evaluate
from src.config import load_params
from src.training.runtime import make_runtime

SETS = ["sim_only", "translated_sim", "real_oracle"]



class RecordingFit:
    """Stands in for fit_segmenter: records its arguments, returns `steps` losses.

    head_class: None leaves the model untouched; else a function (images, labels) -> class that
    the model is then made to predict everywhere (zero head weights, one-hot bias).
    """

    def __init__(self, head_class=None):
        self.calls = []
        self.head_class = head_class

    def __call__(self, model, images, labels, cfg, steps, seed, runtime, desc):
        self.calls.append({
            "model": model, "init": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "images": images.clone(), "labels": labels.clone(), "cfg": cfg, "steps": steps, "seed": seed,
            "runtime": runtime, "desc": desc,
        })
        if self.head_class is not None:
            head = model.segmentation_head[0]
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_(torch.eye(head.out_channels)[self.head_class(images, labels)] * 10)
        return [0.0] * steps


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """The tiny tree, params with distinct budgets (downstream 7 steps, segmenter.steps 3), a CPU runtime."""
    monkeypatch.chdir(tmp_path)
    arrays = make_tree(tmp_path)
    path = write_params(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["evaluate"]["downstream_steps"] = 7
    raw["segmenter"]["steps"] = 3  # the train_segmenter budget: must NOT be what the downstream runs use
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    examples = tmp_path / "examples"
    examples.mkdir()
    return load_params(path), make_runtime("cpu", amp=False), examples, arrays


def run(setup, monkeypatch, recorder):
    params, runtime, examples, _ = setup
    monkeypatch.setattr(evaluate, "fit_segmenter", recorder)
    metrics, judge, _, _, translated_test = evaluate.evaluate_sim2real(params, runtime, examples)
    return metrics, judge, translated_test


def test_three_segmenters_get_one_recipe_budget_and_seed(setup, monkeypatch):
    params, runtime, _, arrays = setup
    recorder = RecordingFit()
    metrics, judge, _ = run(setup, monkeypatch, recorder)

    calls = recorder.calls
    assert len(calls) == 3
    assert [name for call in calls for name in SETS if name in call["desc"]] == SETS
    for call in calls:
        assert call["cfg"] == params.segmenter
        assert call["steps"] == params.evaluate.downstream_steps == 7
        assert call["seed"] == params.seed
        assert call["runtime"] == runtime
    # Three fresh models, each trained once; the judge is the real oracle.
    assert len({id(call["model"]) for call in calls}) == 3
    assert judge is calls[2]["model"]

    assert metrics["downstream"]["steps_per_segmenter"] == {name: 7 for name in SETS}


def test_three_segmenters_train_on_the_three_different_sets(setup, monkeypatch):
    _, _, _, arrays = setup
    recorder = RecordingFit()
    run(setup, monkeypatch, recorder)
    sim_only, translated, oracle = recorder.calls

    raw_sim = torch.from_numpy(arrays["train/sim"])
    assert torch.equal(sim_only["images"], raw_sim)
    assert torch.equal(oracle["images"], torch.from_numpy(arrays["train/real"]))
    # Translated sim: the generator's output for the same slices, in range, not the raw sim.
    assert translated["images"].shape == raw_sim.shape
    assert not torch.allclose(translated["images"], raw_sim, atol=1e-3)
    assert translated["images"].abs().max() <= 1
    expected = evaluate.load_translator(G_SIM2REAL)(raw_sim).clamp(-1, 1)
    assert torch.allclose(translated["images"], expected, atol=1e-5)
    # Sim labels for both sim sets (the translation must keep them valid), real labels for the oracle.
    sim_labels = torch.from_numpy(arrays["train/sim_labels"].astype(np.int64))
    assert torch.equal(sim_only["labels"], sim_labels)
    assert torch.equal(translated["labels"], sim_labels)
    assert torch.equal(oracle["labels"], torch.from_numpy(arrays["train/real_labels"].astype(np.int64)))


def test_three_segmenters_start_from_the_same_initialisation(setup, monkeypatch):
    # "One recipe, one seed": the init must not depend on what ran before (the translator,
    # the previous segmenter's training), or the comparison mixes in init noise.
    recorder = RecordingFit()
    run(setup, monkeypatch, recorder)
    first = recorder.calls[0]["init"]
    for call in recorder.calls[1:]:
        differing = [k for k in first if not torch.equal(first[k], call["init"][k])]
        assert not differing, f"{call['desc']}: init differs from sim_only in {differing[:3]}"


def test_gap_closed_fraction_from_reported_dice(setup, monkeypatch):
    _, _, _, arrays = setup
    real_labels = torch.from_numpy(arrays["train/real_labels"].astype(np.int64))
    raw_sim = torch.from_numpy(arrays["train/sim"])

    def constant_class(images, labels):
        # sim_only -> csf, translated_sim -> gm, real_oracle -> wm, everywhere.
        if torch.equal(labels, real_labels):
            return 3
        return 1 if torch.equal(images, raw_sim) else 2

    metrics, _, _ = run(setup, monkeypatch, RecordingFit(constant_class))
    downstream = metrics["downstream"]

    # By hand: test label maps have 128 / 128 / 256 / 512 of 1024 pixels in classes 0..3. Predicting
    # class c everywhere gives Dice_c = 2 T_c / (1024 + T_c) and 0 for the other foreground classes.
    dice = {1: 2 * 128 / (1024 + 128), 2: 2 * 256 / (1024 + 256), 3: 2 * 512 / (1024 + 512)}
    assert dice == pytest.approx({1: 2 / 9, 2: 0.4, 3: 2 / 3})
    for name, c in zip(SETS, (1, 2, 3)):
        assert downstream[name]["mean_foreground"] == pytest.approx(dice[c] / 3)
        assert downstream[name][["csf", "gm", "wm"][c - 1]] == pytest.approx(dice[c])

    sim_only, translated, oracle = (downstream[name]["mean_foreground"] for name in SETS)
    assert downstream["gap_closed_fraction"] == pytest.approx((translated - sim_only) / (oracle - sim_only))
    assert downstream["gap_closed_fraction"] == pytest.approx(0.4)

    # Content preservation is scored by the judge, i.e. the real oracle (wm everywhere), on test sim labels.
    for name in ("judge_on_raw_sim", "judge_on_translated_sim"):
        assert metrics["content"][name]["wm"] == pytest.approx(2 / 3)
        assert metrics["content"][name]["csf"] == 0


def test_gap_closed_fraction_is_nan_when_oracle_equals_sim_only(setup, monkeypatch):
    metrics, _, _ = run(setup, monkeypatch, RecordingFit(lambda images, labels: 2))
    downstream = metrics["downstream"]
    assert downstream["sim_only"]["mean_foreground"] == downstream["real_oracle"]["mean_foreground"]
    assert np.isnan(downstream["gap_closed_fraction"])
