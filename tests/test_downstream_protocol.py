"""The downstream comparison of the evaluation stages (CyCADA protocol): every row, one recipe, one budget, the same seeds.

`fit_segmenter` is replaced by a recorder, so these tests see exactly what each row (sim_only,
classical, randomized, translated_sim, translated_classical, real_oracle) is trained with, for each seed, on the tiny tree of
test_evaluate_errors.py; the whole stage runs and its metrics.json is checked.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_evaluate_errors import (G_SIM2REAL, G_SIM2REAL_RAW, METRICS, make_tree, one_thread,  # noqa: F401 (autouse)
                                  run_evaluation, write_params)

from src.config import load_params
from src.evaluation import downstream
from src.evaluation.models import load_translator

SETS = ["sim_only", "classical", "randomized", "translated_sim", "translated_classical", "real_oracle"]
SEEDS = [42, 43]


class RecordingFit:
    """Stands in for fit_segmenter: records its arguments, returns `steps` losses.

    head_class: None leaves the model untouched; else a function (images, labels, seed) -> class
    that the model is then made to predict everywhere (zero head weights, one-hot bias).
    """

    def __init__(self, head_class=None):
        self.calls = []
        self.head_class = head_class

    def __call__(self, model, images, labels, cfg, steps, seed, runtime, desc, render=None):
        self.calls.append({
            "model": model, "init": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "images": images.clone(), "labels": labels.clone(), "cfg": cfg, "steps": steps, "seed": seed,
            "runtime": runtime, "desc": desc, "render": render,
        })
        if self.head_class is not None:
            head = model.segmentation_head[0]
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_(torch.eye(head.out_channels)[self.head_class(images, labels, seed, render)] * 10)
        return [0.0] * steps


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """The tiny tree and params with distinct budgets (downstream 7 steps, segmenter.steps 3) and two seeds."""
    monkeypatch.chdir(tmp_path)
    arrays = make_tree(tmp_path)
    path = write_params(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["evaluate"].update(downstream_steps=7, downstream_seeds=len(SEEDS), bootstrap_resamples=200,
                           bootstrap_set_resamples=40)
    raw["segmenter"]["steps"] = 3  # the train_segmenter budget: must NOT be what the downstream runs use
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(path), path, arrays


def run(setup, monkeypatch, recorder) -> dict:
    _, path, _ = setup
    monkeypatch.setattr(downstream, "fit_segmenter", recorder)
    assert run_evaluation(path) == 0
    return json.loads(Path(METRICS).read_text())


def calls_of(recorder, row: str) -> list[dict]:
    return [call for call in recorder.calls if f"downstream {row} " in call["desc"]]


def test_every_row_gets_one_recipe_budget_and_the_same_seeds(setup, monkeypatch):
    params, _, _ = setup
    recorder = RecordingFit()
    metrics = run(setup, monkeypatch, recorder)

    assert len(recorder.calls) == len(SETS) * len(SEEDS)
    for row in SETS:
        calls = calls_of(recorder, row)
        assert [call["seed"] for call in calls] == SEEDS
        for call in calls:
            assert call["cfg"] == params.segmenter
            assert call["steps"] == params.evaluate.downstream_steps == 7
    assert len({call["runtime"] for call in recorder.calls}) == 1  # baselines and evaluate_sim2real: one device, precision
    assert len({id(call["model"]) for call in recorder.calls}) == len(recorder.calls), "a fresh model per run"

    protocol = metrics["protocol"]["downstream"]
    assert protocol["steps_per_segmenter"] == {name: 7 for name in SETS}
    assert protocol["seeds"] == SEEDS and protocol["steps"] == 7
    # The budget is a protocol fact, not a row of the Dice table.
    assert set(metrics["sim2real"]["downstream"]) == set(SETS)


def test_rows_train_on_their_own_renderings_of_the_same_labels(setup, monkeypatch):
    _, _, arrays = setup
    recorder = RecordingFit()
    run(setup, monkeypatch, recorder)
    raw_sim, classical = (torch.from_numpy(arrays[f"train/{k}"]) for k in ("sim", "classical"))
    sim_labels = torch.from_numpy(arrays["train/sim_labels"].astype(np.int64))
    expected = {"sim_only": raw_sim, "classical": classical,
                "translated_sim": load_translator(G_SIM2REAL_RAW, expected=None)(raw_sim).clamp(-1, 1),
                "translated_classical": load_translator(G_SIM2REAL, expected=None)(classical).clamp(-1, 1),
                "real_oracle": torch.from_numpy(arrays["train/real"])}
    for calls in zip(*(calls_of(recorder, row) for row in SETS)):
        call = dict(zip(SETS, calls))
        for row, images in expected.items():
            assert torch.allclose(call[row]["images"], images, atol=1e-5), row
            assert call[row]["render"] is None, row
        # Each translator moved its own input (a random-init generator is not the identity), within range.
        assert not torch.allclose(call["translated_sim"]["images"], raw_sim, atol=1e-3)
        assert not torch.allclose(call["translated_classical"]["images"], classical, atol=1e-3)
        # Every sim rendering keeps the simulator's labels; the oracle has the real ones.
        for row in SETS[:-1]:
            assert torch.equal(call[row]["labels"], sim_labels), row
        assert torch.equal(call["real_oracle"]["labels"], torch.from_numpy(arrays["train/real_labels"].astype(np.int64)))
        # Randomised: images are drawn from each batch's labels, afresh per batch, and never move a label.
        render = call["randomized"]["render"]
        assert render is not None
        batch = sim_labels[:2].clone()
        draws = torch.Generator().manual_seed(0)
        first, second = render(batch, draws), render(batch, draws)
        assert torch.equal(batch, sim_labels[:2]) and not torch.allclose(first, second)
        assert torch.all(first[:, 0][batch == 0] == -1)


def test_rows_of_one_seed_start_from_the_same_initialisation_and_seeds_differ(setup, monkeypatch):
    # "One recipe, one seed": the init must not depend on what ran before (the translator, the
    # previous segmenter's training), or the comparison mixes in init noise.
    recorder = RecordingFit()
    run(setup, monkeypatch, recorder)
    by_seed = {seed: [call for call in recorder.calls if call["seed"] == seed] for seed in SEEDS}
    for seed, calls in by_seed.items():
        first = calls[0]["init"]
        for call in calls[1:]:
            differing = [k for k in first if not torch.equal(first[k], call["init"][k])]
            assert not differing, f"{call['desc']}: init differs from {calls[0]['desc']} in {differing[:3]}"
    a, b = (by_seed[seed][0]["init"] for seed in SEEDS)
    assert any(not torch.equal(a[k], b[k]) for k in a), "two seeds gave the same initialisation"


# By hand: test label maps have 128 / 128 / 256 / 512 of 1024 pixels in classes 0..3. Predicting
# class c everywhere gives Dice_c = 2 T_c / (1024 + T_c) and 0 for the other foreground classes.
DICE = {1: 2 / 9, 2: 0.4, 3: 2 / 3}


def test_gap_closed_fraction_and_differences_from_known_dice(setup, monkeypatch):
    _, _, arrays = setup
    real_labels = torch.from_numpy(arrays["train/real_labels"].astype(np.int64))
    raw_sim = torch.from_numpy(arrays["train/sim"])

    def constant_class(images, labels, seed, render):
        # sim_only and randomized -> csf, every other sim rendering -> gm, real_oracle -> wm, everywhere, every seed.
        if torch.equal(labels, real_labels):
            return 3
        return 1 if torch.equal(images, raw_sim) else 2

    metrics = run(setup, monkeypatch, RecordingFit(constant_class))
    rows = metrics["sim2real"]["downstream"]
    for name, c in zip(SETS, (1, 2, 1, 2, 2, 3)):
        assert rows[name]["mean_foreground"] == pytest.approx(DICE[c] / 3)
        assert rows[name][["csf", "gm", "wm"][c - 1]] == pytest.approx(DICE[c])
        assert rows[name]["mean_foreground_std"] == pytest.approx(0.0, abs=1e-12)  # every seed predicts alike

    # Every test slice has the same label layout, so every resample gives the same Dice: zero-width intervals.
    gap = rows["translated_sim"]
    assert gap["gap_closed_fraction"] == pytest.approx((DICE[2] - DICE[1]) / (DICE[3] - DICE[1])) == pytest.approx(0.4)
    assert gap["gap_closed_fraction_ci95_low"] == pytest.approx(0.4) == gap["gap_closed_fraction_ci95_high"]
    assert rows["sim_only"]["gap_closed_fraction"] == 0 and rows["real_oracle"]["gap_closed_fraction"] == 1
    vs = metrics["sim2real"]["downstream_vs_sim_only"]["translated_sim"]
    assert vs["mean_foreground"] == pytest.approx((DICE[2] - DICE[1]) / 3)
    assert vs["mean_foreground_better"] is True

    # Against the strongest free baseline, paired the same way: CycleGAN(raw sim) (gm) beats randomisation (csf).
    vs_randomized = metrics["sim2real"]["downstream_vs_randomized"]["translated_sim"]
    assert vs_randomized["mean_foreground"] == pytest.approx((DICE[2] - DICE[1]) / 3)
    assert vs_randomized["mean_foreground_better"] is True

    vs_classical = metrics["sim2real"]["downstream_vs_classical"]["translated_classical"]
    assert vs_classical["mean_foreground"] == 0 and vs_classical["mean_foreground_better"] == "indistinguishable"

    # Content preservation is scored by the judge, i.e. the first-seed real oracle (wm everywhere), on test sim
    # labels for the renderings and on the real labels for the real slices (same band layout, same Dice).
    for name in ("judge_on_raw_sim", "judge_on_classical", "judge_on_translated_sim",
                 "judge_on_translated_classical", "judge_on_real"):
        assert metrics["sim2real"]["content"][name]["wm"] == pytest.approx(2 / 3)
        assert metrics["sim2real"]["content"][name]["csf"] == 0
    assert metrics["sim2real"]["translated_vs_raw_sim"]["judge_dice_mean_foreground_better"] == "indistinguishable"


def test_seed_spread_and_seed_resampling_from_known_dice(setup, monkeypatch):
    # sim_only predicts csf with seed 42 and gm with seed 43: its value is the seed mean, its std the
    # spread of the two, and its interval runs from one seed's value to the other's (resamples draw
    # both seeds as 42 or both as 43 with probability 1/4 each).
    metrics = run(setup, monkeypatch, RecordingFit(lambda images, labels, seed, render: 1 if seed == 42 else 2))
    row = metrics["sim2real"]["downstream"]["sim_only"]
    per_seed = np.array([DICE[1] / 3, DICE[2] / 3])
    assert row["mean_foreground"] == pytest.approx(per_seed.mean())
    assert row["mean_foreground_std"] == pytest.approx(per_seed.std(ddof=1))
    assert row["mean_foreground_ci95_low"] == pytest.approx(per_seed.min())
    assert row["mean_foreground_ci95_high"] == pytest.approx(per_seed.max())
    # Every row predicts alike: the paired difference is exactly 0, hence not a win.
    vs = metrics["sim2real"]["downstream_vs_sim_only"]["translated_sim"]
    assert vs["mean_foreground"] == 0 and vs["mean_foreground_better"] == "indistinguishable"


def test_gap_closed_fraction_is_nan_when_oracle_equals_sim_only(setup, monkeypatch):
    metrics = run(setup, monkeypatch, RecordingFit(lambda images, labels, seed, render: 2))
    rows = metrics["sim2real"]["downstream"]
    assert rows["sim_only"]["mean_foreground"] == rows["real_oracle"]["mean_foreground"]
    assert np.isnan(rows["translated_sim"]["gap_closed_fraction"])


def test_gap_closed_fraction_is_nan_when_the_oracle_does_not_clearly_beat_sim_only(setup, monkeypatch):
    # The oracle is higher on average (wm with seed 42, csf with seed 43, against gm for every sim row) but
    # its paired interval against sim_only holds 0 (seed resamples draw 42 twice or 43 twice): no gap to close.
    _, _, arrays = setup
    real_labels = torch.from_numpy(arrays["train/real_labels"].astype(np.int64))

    def pick(images, labels, seed, render):
        if torch.equal(labels, real_labels):
            return 3 if seed == 42 else 1
        return 2

    metrics = run(setup, monkeypatch, RecordingFit(pick))
    rows = metrics["sim2real"]["downstream"]
    assert rows["real_oracle"]["mean_foreground"] > rows["sim_only"]["mean_foreground"]
    assert metrics["sim2real"]["downstream_vs_sim_only"]["real_oracle"]["mean_foreground_better"] == "indistinguishable"
    for row in SETS:
        assert np.isnan(rows[row]["gap_closed_fraction"]), row
