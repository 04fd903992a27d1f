"""The downstream U-Nets trained in spawned processes (evaluate.downstream_processes) are the models one process
trains one at a time: same weights bit for bit, same budgets, same order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from src.augment.randomization import RandomizedRender
from src.config import load_params
from src.evaluation.downstream import TrainingSet, train_downstream, training_processes, unet_builder
from src.training.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
CPU = Runtime(torch.device("cpu"), amp=False, channels_last=False)


@pytest.fixture
def tiny(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["segmenter"].update(encoder="resnet18", encoder_depth=3, decoder_channels=[8, 4, 4], batch_size=2,
                            crop_size=16)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(path)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (5, 24, 24), generator=g)
    images = (labels.float()[:, None] / 3 * 2 - 1 + 0.1 * torch.randn(5, 1, 24, 24, generator=g)).clamp(-1, 1)
    sets = {"plain": TrainingSet(images, labels),
            "randomized": TrainingSet(images, labels, RandomizedRender(3, params.evaluate.randomization))}
    return params.segmenter, sets


def test_spawned_processes_train_the_same_models_as_one_process(tiny):
    recipe, sets = tiny
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers get 1 // 2 -> 1 thread each: the same arithmetic as here
    try:
        build = unet_builder(recipe, 4, None, CPU)
        alone = train_downstream(sets, build, recipe, 3, [7, 8], CPU, processes=1)
        spawned = train_downstream(sets, build, recipe, 3, [7, 8], CPU, processes=2)
    finally:
        torch.set_num_threads(before)
    assert alone.steps_per_segmenter == spawned.steps_per_segmenter == {"plain": 3, "randomized": 3}
    assert alone.encoder_init == spawned.encoder_init
    for row in sets:
        assert len(spawned.models[row]) == 2
        for a, b in zip(alone.models[row], spawned.models[row]):
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys()
            for name in sa:
                assert torch.equal(sa[name], sb[name]), f"{row}: {name}"
            assert not b.training  # ready to score, as the in-process models are
    # Seeds differ and rows differ: the comparison above is not between copies of one model.
    first = alone.models["plain"]
    assert not torch.equal(first[0].state_dict()["segmentation_head.0.weight"],
                           first[1].state_dict()["segmentation_head.0.weight"])


def test_a_training_error_in_a_process_reaches_the_stage(tiny):
    recipe, sets = tiny
    bad = dataclasses.replace(recipe, crop_size=64)  # larger than the 24 px images: fit_segmenter refuses
    with pytest.raises(ValueError, match="segmenter.crop_size 64"):
        train_downstream(sets, unet_builder(bad, 4, None, CPU), bad, 2, [7], CPU, processes=2)


def test_process_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # as on a 2-core machine
        assert training_processes("auto", CPU, jobs=12) == 2
        torch.set_num_threads(1)  # OMP_NUM_THREADS=1: the user gave this process one core
        assert training_processes("auto", CPU, jobs=12) == 1
    finally:
        torch.set_num_threads(before)
    assert training_processes("auto", CPU, jobs=1) == 1
    gpu = dataclasses.replace(CPU, device=torch.device("cuda"))
    assert training_processes("auto", gpu, jobs=12) == 1
    assert training_processes(3, CPU, jobs=2) == 2
    assert training_processes(1, CPU, jobs=12) == 1
