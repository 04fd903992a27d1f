"""Loading the trained translators for evaluation, with errors that name the file and the stage to re-run."""

from __future__ import annotations

from pathlib import Path

import torch

from src.models.cyclegan import ResnetGenerator
from src.training.artifacts import load_frozen
from src.training.provenance import Provenance


def load_translator(path: Path, source: str | None = None, *, expected: Provenance | None) -> torch.nn.Module:
    """g_sim2real saved by train_cyclegan, frozen in eval mode.

    source: the input rendering the caller will feed it ("sim" or "classical"). Then the file must say it is
    the sim -> real generator trained on that input: a model is never trusted by its file name (a real -> sim
    generator copied to g_sim2real.pt, or the other input's translator, is refused naming the file).
    expected (translator_provenance; None for benchmarks that trained the file themselves): the data and params
    it must have been trained on.
    """
    def build(meta: dict) -> torch.nn.Module:
        if source is not None and (meta.get("direction"), meta.get("input")) != ("sim2real", source):
            raise ValueError(f"{path}: is the {meta.get('direction') or 'unlabelled'} generator trained on the "
                             f"{meta.get('input') or 'unknown'} input, but is read as the sim2real translator of the "
                             f"{source} input; re-run `dvc repro train_cyclegan@{source}`")
        # intensity_hidden: absent in files saved before the intensity branch existed (they have none).
        return ResnetGenerator(1, meta["channels"], meta["blocks"], meta["residual"], meta.get("intensity_hidden", 0))
    net, meta = load_frozen(path, build, f"train_cyclegan@{source}" if source else "train_cyclegan", expected)
    # conv_path false (train.cyclegan.pointwise_steps >= steps): the translator is its pointwise branch; its
    # never-trained conv path outputs exactly 0, so skipping it changes nothing but the cost.
    net.conv_path_enabled = meta.get("conv_path", True)
    return net
