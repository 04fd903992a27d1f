"""What a saved model records it was trained on: each fingerprint moves with what shapes that model, and only with it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from src.config import params_from_dict
from src.training.provenance import (judge_provenance, segmenter_provenance, sr_provenance,
                                     translator_provenance)

REPO = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """Tiny prepared splits of both sets, the working directory at their root."""
    monkeypatch.chdir(tmp_path)
    for folder in ("sr/train", "sr/test", "sim2real/train", "sim2real/test"):
        path = tmp_path / "data/prepared" / folder
        path.mkdir(parents=True)
        np.save(path / "images.npy", np.arange(8, dtype=np.float32))
    return tmp_path / "data/prepared"


def stamps(edit=None) -> dict[str, dict]:
    raw = copy.deepcopy(RAW)
    if edit:
        edit(raw)
    params = params_from_dict(raw)
    return {"sr_psnr": sr_provenance(params, "psnr").as_meta(), "sr": sr_provenance(params, "gan").as_meta(), "segmenter": segmenter_provenance(params).as_meta(),
            "judge": judge_provenance(params).as_meta(),
            **{f"translator@{s}": translator_provenance(params, s).as_meta() for s in ("sim", "classical")}}


def changed(edit) -> set[str]:
    """The models whose params fingerprint `edit` changes."""
    before, after = stamps(), stamps(edit)
    return {name for name in before if before[name]["params"] != after[name]["params"]}


TRANSLATORS = {"translator@sim", "translator@classical"}
CASES = {
    "seed": (lambda raw: raw.update(seed=raw["seed"] + 1), {"sr_psnr", "sr", "segmenter", "judge"} | TRANSLATORS),
    "data.train_fraction": (lambda raw: raw["data"].update(train_fraction=0.5), {"sr_psnr", "sr"} | TRANSLATORS),
    # a PSNR-phase key stales both SR models (the GAN starts from the PSNR model); a GAN-phase key only the GAN
    "train.sr.lr_psnr": (lambda raw: raw["train"]["sr"].update(lr_psnr=raw["train"]["sr"]["lr_psnr"] * 2),
                         {"sr_psnr", "sr"}),
    "train.sr.lambda_adv": (lambda raw: raw["train"]["sr"].update(lambda_adv=raw["train"]["sr"]["lambda_adv"] * 2),
                            {"sr"}),
    "train.sr.gan_steps": (lambda raw: raw["train"]["sr"].update(gan_steps=raw["train"]["sr"]["gan_steps"] + 1),
                           {"sr"}),
    "train.sr.lr_d": (lambda raw: raw["train"]["sr"].update(lr_d=raw["train"]["sr"]["lr_d"] * 2), {"sr"}),
    "train.lambda_cycle": (lambda raw: raw["train"].update(lambda_cycle=raw["train"]["lambda_cycle"] + 1),
                           TRANSLATORS),
    "train.cyclegan.steps": (lambda raw: raw["train"]["cyclegan"].update(steps=raw["train"]["cyclegan"]["steps"] + 1),
                             TRANSLATORS),
    "segmenter.steps": (lambda raw: raw["segmenter"].update(steps=raw["segmenter"]["steps"] + 1), {"segmenter"}),
    "segmenter.lr": (lambda raw: raw["segmenter"].update(lr=raw["segmenter"]["lr"] * 2), {"segmenter", "judge"}),
    "evaluate.downstream_steps": (lambda raw: raw["evaluate"].update(
        downstream_steps=raw["evaluate"]["downstream_steps"] + 1), {"judge"}),
    # how a model was trained or logged, or how it is scored: no model changes
    "train.sr.log_every": (lambda raw: raw["train"]["sr"].update(log_every=raw["train"]["sr"]["log_every"] + 1), set()),
    "train.cyclegan.checkpoint_every": (lambda raw: raw["train"]["cyclegan"].update(checkpoint_every=7), set()),
    "train.amp": (lambda raw: raw["train"].update(amp=not raw["train"]["amp"] if isinstance(raw["train"]["amp"], bool)
                                                  else False), set()),
    "evaluate.n_examples": (lambda raw: raw["evaluate"].update(n_examples=raw["evaluate"]["n_examples"] + 1), set()),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_params_change_stales_exactly_the_models_it_shapes(prepared, key):
    edit, expected = CASES[key]
    assert changed(edit) == expected


def test_a_change_of_a_train_split_stales_the_models_trained_on_it_and_no_other(prepared):
    before = stamps()
    assert before["translator@sim"]["params"] != before["translator@classical"]["params"]
    np.save(prepared / "sr/test/images.npy", np.ones(8, np.float32))  # a test split is never trained on
    np.save(prepared / "sim2real/test/images.npy", np.ones(8, np.float32))
    assert stamps() == before
    np.save(prepared / "sr/train/images.npy", np.ones(8, np.float32))
    after = stamps()
    assert {name for name in before if before[name]["data"] != after[name]["data"]} == {"sr_psnr", "sr"}
    np.save(prepared / "sim2real/train/images.npy", np.ones(8, np.float32))
    final = stamps()
    assert {name for name in after if after[name]["data"] != final[name]["data"]} == {"segmenter", "judge"} | TRANSLATORS
