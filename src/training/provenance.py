"""What a saved network was trained on, written into its file and checked by every stage that loads it.

A model is never trusted by its file name. Each stage that saves a network records two fingerprints in the
file's meta: the prepared train split it read (`split_digest`) and the params that shaped it. A loader
recomputes both from this run's prepared data and params.yaml and refuses a file trained on anything else,
naming the file, what differs and the stage to re-run. That catches a model copied in from another experiment,
one trained before `prepare` was re-run on other subjects (whose test slices it may have trained on), and a
stage run by hand after a params change its model never saw.

Device, precision (`train.amp`), process counts and logging intervals are left out: they change how a model
was trained, not what it is, and a run resumed on other hardware must still pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from src.config import Params, as_dict, fingerprint
from src.data.prepared import PREPARED, split_digest

SR_TRAIN, SIM2REAL_TRAIN = PREPARED / "sr" / "train", PREPARED / "sim2real" / "train"
LOGGING_KEYS = ("log_every", "sample_every", "checkpoint_every")  # when to log, never what is learned
META_KEY = "provenance"
# The keys of `segmenter` the downstream U-Nets (and the judge among them) are built and trained with;
# `segmenter.steps` and `segmenter.randomize` belong to train_segmenter's own U-Net (dvc.yaml: baselines).
DOWNSTREAM_RECIPE = ("encoder", "encoder_depth", "decoder_channels", "batch_size", "crop_size", "lr", "weight_decay")
# The keys of `train.sr` the PSNR phase (stage train_sr_psnr) trains with; the GAN phase (train_sr) starts from its
# model and uses every key. dvc.yaml lists exactly these (plus the logging keys) for train_sr_psnr, so that an
# experiment on the GAN phase (`-S train.sr.lambda_adv=...`) does not retrain the PSNR model.
SR_PSNR_KEYS = ("crop_size", "batch_size", "g_blocks", "g_channels", "data_consistency", "data_consistency_band",
                "clamp_output", "psnr_steps", "warmup_steps", "lr_psnr", "betas", "ema_decay")


@dataclass(frozen=True)
class Provenance:
    stage: str        # the `dvc repro` target that rebuilds the file
    data_dir: Path    # the prepared split it trains on
    data: str         # split_digest(data_dir)
    params_keys: str  # the params.yaml keys behind `params`, as an error names them
    params: str       # fingerprint of those keys' values

    def as_meta(self) -> dict:
        """The entry `save_weights` stores under META_KEY."""
        return {"stage": self.stage, "data": self.data, "params": self.params}


def _without_logging(section) -> dict:
    return {key: value for key, value in as_dict(section).items() if key not in LOGGING_KEYS}


def segmenter_provenance(params: Params) -> Provenance:
    """train_segmenter's U-Net (the frozen semantic term of the CycleGAN)."""
    return Provenance("train_segmenter", SIM2REAL_TRAIN, split_digest(SIM2REAL_TRAIN), "seed, segmenter",
                      fingerprint(params.seed, as_dict(params.segmenter)))


def judge_provenance(params: Params) -> Provenance:
    """The judge U-Net of `baselines` (real_oracle, first seed): scores realism in a feature space."""
    recipe = as_dict(params.segmenter)
    return Provenance("baselines", SIM2REAL_TRAIN, split_digest(SIM2REAL_TRAIN),
                      "seed, segmenter.{" + ",".join(DOWNSTREAM_RECIPE) + "}, evaluate.downstream_steps",
                      fingerprint(params.seed, {key: recipe[key] for key in DOWNSTREAM_RECIPE},
                                  params.evaluate.downstream_steps))


def sr_provenance(params: Params, phase: str) -> Provenance:
    """The PSNR model of train_sr_psnr (phase "psnr": its own keys of train.sr) or the GAN model of train_sr
    (phase "gan": all of train.sr, since it starts from the PSNR model)."""
    sr = _without_logging(params.train.sr)
    if phase == "psnr":
        return Provenance("train_sr_psnr", SR_TRAIN, split_digest(SR_TRAIN),
                          "seed, data.train_fraction, train.sr.{" + ",".join(SR_PSNR_KEYS) + "}",
                          fingerprint(params.seed, params.data.train_fraction, "psnr",
                                      {key: sr[key] for key in SR_PSNR_KEYS}))
    if phase != "gan":
        raise ValueError(f"unknown SR phase {phase!r}; expected 'psnr' or 'gan'")
    return Provenance("train_sr", SR_TRAIN, split_digest(SR_TRAIN), "seed, data.train_fraction, train.sr",
                      fingerprint(params.seed, params.data.train_fraction, sr))


def translator_provenance(params: Params, source: str) -> Provenance:
    """train_cyclegan@source's generators."""
    train = params.train
    weights = {key: getattr(train, key) for key in ("lambda_adv", "lambda_cycle", "lambda_identity", "lambda_percep",
                                                    "lambda_semantic", "lambda_structure")}
    return Provenance(f"train_cyclegan@{source}", SIM2REAL_TRAIN, split_digest(SIM2REAL_TRAIN),
                      "seed, data.train_fraction, train.lambda_*, train.cyclegan",
                      fingerprint(params.seed, params.data.train_fraction, source, weights,
                                  _without_logging(train.cyclegan)))


def check_provenance(path: Path, meta: dict, expected: Provenance) -> None:
    """Refuse a model file whose recorded provenance is not `expected`, naming the file and what differs."""
    found = meta.get(META_KEY)
    rerun = f"re-run `dvc repro {expected.stage}`"
    if not isinstance(found, dict):
        raise ValueError(f"{path}: records no training provenance (saved by an older version of the code); {rerun}")
    differs = []
    if found.get("data") != expected.data:
        differs.append(f"other prepared data than {expected.data_dir} holds now")
    if found.get("params") != expected.params:
        differs.append(f"other values of {expected.params_keys} than params.yaml has now")
    if differs:
        raise ValueError(f"{path}: was trained on {' and '.join(differs)}; its scores would be reported under the "
                         f"wrong data or params: {rerun} (or restore the matching params.yaml / data)")
