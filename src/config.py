"""Typed parameters: params.yaml loaded into frozen dataclasses, validated at the edge.

Unknown keys, missing keys and wrong types fail at load time with the full dotted key
(`train.lambda_cycle: expected float, got 'ten'`). Integers are accepted where floats
are expected because `dvc exp run -S train.lambda_cycle=10` writes `10`, not `10.0`.
Range and choice checks live in each section's `__post_init__` and name their key too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml problem; the message starts with the dotted key."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class WeightsConfig:
    vgg19_path: str
    inception_path: str
    resnet18_path: str
    allow_download: bool
    download_timeout_s: float

    def __post_init__(self) -> None:
        _require(self.download_timeout_s > 0, "weights.download_timeout_s", "must be > 0")


@dataclass(frozen=True)
class SimConfig:
    field_strength: float
    tr_ms: float
    te_ms: float
    noise_std: float
    elastic_magnitude: float
    variants_per_slice: int

    def __post_init__(self) -> None:
        _require(self.field_strength in (1.5, 3.0), "data.sim.field_strength", f"must be 1.5 or 3.0, got {self.field_strength}")
        _require(self.tr_ms > 0, "data.sim.tr_ms", "must be > 0")
        _require(0 < self.te_ms < self.tr_ms, "data.sim.te_ms", "must be > 0 and < data.sim.tr_ms")
        _require(self.noise_std >= 0, "data.sim.noise_std", "must be >= 0")
        _require(self.elastic_magnitude >= 0, "data.sim.elastic_magnitude", "must be >= 0")
        _require(self.variants_per_slice >= 1, "data.sim.variants_per_slice", "must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    source: str
    folder: str
    axes: list[int]
    image_size: int
    min_foreground: float
    percentiles: list[float]
    split_fractions: list[float]
    split_gap: int
    sim_fraction: float
    sim_block: int
    scale: int
    degradation: str
    lr_noise_std: float
    sim: SimConfig

    def __post_init__(self) -> None:
        _require(self.source in ("mni152", "folder"), "data.source", f"must be 'mni152' or 'folder', got {self.source!r}")
        _require(len(self.axes) > 0 and all(a in (0, 1, 2) for a in self.axes), "data.axes", f"must be a non-empty list of 0, 1, 2, got {self.axes}")
        _require(self.scale in (2, 4, 8), "data.scale", f"must be 2, 4 or 8, got {self.scale}")
        _require(self.image_size >= 16 and self.image_size % (self.scale * 8) == 0, "data.image_size",
                 f"must be >= 16 and divisible by 8 * data.scale = {8 * self.scale}, got {self.image_size}")
        _require(0 <= self.min_foreground < 1, "data.min_foreground", "must be in [0, 1)")
        _require(len(self.percentiles) == 2 and 0 <= self.percentiles[0] < self.percentiles[1] <= 100,
                 "data.percentiles", f"must be [low, high] with 0 <= low < high <= 100, got {self.percentiles}")
        _require(len(self.split_fractions) == 3 and all(f > 0 for f in self.split_fractions)
                 and abs(sum(self.split_fractions) - 1) < 1e-6,
                 "data.split_fractions", f"must be three positive fractions summing to 1, got {self.split_fractions}")
        _require(self.split_gap >= 0, "data.split_gap", "must be >= 0")
        _require(0 < self.sim_fraction < 1, "data.sim_fraction", "must be in (0, 1)")
        _require(self.sim_block >= 1, "data.sim_block", "must be >= 1")
        _require(self.degradation in ("kspace", "bicubic"), "data.degradation", f"must be 'kspace' or 'bicubic', got {self.degradation!r}")
        _require(self.lr_noise_std >= 0, "data.lr_noise_std", "must be >= 0")


@dataclass(frozen=True)
class SegmenterConfig:
    encoder: str
    encoder_depth: int
    decoder_channels: list[int]
    steps: int
    batch_size: int
    crop_size: int
    lr: float
    weight_decay: float

    def __post_init__(self) -> None:
        _require(3 <= self.encoder_depth <= 5, "segmenter.encoder_depth", "must be 3, 4 or 5")
        _require(len(self.decoder_channels) == self.encoder_depth, "segmenter.decoder_channels",
                 f"needs one entry per encoder stage ({self.encoder_depth}), got {len(self.decoder_channels)}")
        _require(self.steps >= 1, "segmenter.steps", "must be >= 1")
        _require(self.batch_size >= 1, "segmenter.batch_size", "must be >= 1")
        _require(self.crop_size % (2 ** self.encoder_depth) == 0, "segmenter.crop_size",
                 f"must be divisible by 2**encoder_depth = {2 ** self.encoder_depth}")
        _require(self.lr > 0, "segmenter.lr", "must be > 0")


GAN_LOSSES = ("nonsaturating", "lsgan", "hinge")


def _check_gan_common(prefix: str, section: Any) -> None:
    _require(section.gan_loss in GAN_LOSSES, f"{prefix}.gan_loss", f"must be one of {GAN_LOSSES}, got {section.gan_loss!r}")
    _require(section.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
    _require(section.log_every >= 1, f"{prefix}.log_every", "must be >= 1")
    _require(section.sample_every >= 1, f"{prefix}.sample_every", "must be >= 1")
    _require(section.checkpoint_every >= 1, f"{prefix}.checkpoint_every", "must be >= 1")
    _require(len(section.betas) == 2 and all(0 <= b < 1 for b in section.betas), f"{prefix}.betas", "must be two values in [0, 1)")
    _require(len(section.vgg_layers) > 0, f"{prefix}.vgg_layers", "must name at least one VGG19 layer")
    _require(section.d_layers >= 1, f"{prefix}.d_layers", "must be >= 1")
    _require(section.crop_size % (2 ** section.d_layers) == 0, f"{prefix}.crop_size",
             f"must be divisible by 2**d_layers = {2 ** section.d_layers}")


@dataclass(frozen=True)
class SRTrainConfig:
    crop_size: int
    batch_size: int
    g_blocks: int
    g_channels: int
    d_channels: int
    d_layers: int
    psnr_steps: int
    gan_steps: int
    lr_psnr: float
    lr_gan: float
    betas: list[float]
    lambda_pixel: float
    lambda_percep: float
    lambda_adv: float
    vgg_layers: list[str]
    gan_loss: str
    spectral_norm: bool
    r1_gamma: float
    label_smoothing: float
    instance_noise: float
    diffaugment: str
    ema_decay: float
    log_every: int
    sample_every: int
    checkpoint_every: int

    def __post_init__(self) -> None:
        _check_gan_common("train.sr", self)
        _require(self.psnr_steps >= 1, "train.sr.psnr_steps", "must be >= 1")
        _require(self.gan_steps >= 0, "train.sr.gan_steps", "must be >= 0")
        _require(self.g_blocks >= 1, "train.sr.g_blocks", "must be >= 1")
        _require(self.lr_psnr > 0, "train.sr.lr_psnr", "must be > 0")
        _require(self.lr_gan > 0, "train.sr.lr_gan", "must be > 0")
        for name in ("lambda_pixel", "lambda_percep", "lambda_adv", "r1_gamma", "instance_noise"):
            _require(getattr(self, name) >= 0, f"train.sr.{name}", "must be >= 0")
        _require(0 <= self.label_smoothing < 0.5, "train.sr.label_smoothing", "must be in [0, 0.5)")
        _require(0 <= self.ema_decay < 1, "train.sr.ema_decay", "must be in [0, 1)")


@dataclass(frozen=True)
class CycleGANTrainConfig:
    crop_size: int
    batch_size: int
    g_blocks: int
    g_channels: int
    residual: bool
    d_channels: int
    d_layers: int
    steps: int
    decay_start: int
    lr: float
    betas: list[float]
    gan_loss: str
    spectral_norm: bool
    pool_size: int
    vgg_layers: list[str]
    diffaugment: str
    log_every: int
    sample_every: int
    checkpoint_every: int

    def __post_init__(self) -> None:
        _check_gan_common("train.cyclegan", self)
        _require(self.steps >= 1, "train.cyclegan.steps", "must be >= 1")
        _require(0 <= self.decay_start <= self.steps, "train.cyclegan.decay_start", "must be in [0, train.cyclegan.steps]")
        _require(self.lr > 0, "train.cyclegan.lr", "must be > 0")
        _require(self.pool_size >= 0, "train.cyclegan.pool_size", "must be >= 0")
        _require(self.crop_size % 4 == 0, "train.cyclegan.crop_size", "must be divisible by 4 (two down-samplings)")


@dataclass(frozen=True)
class TrainConfig:
    device: str
    amp: bool
    resume: bool
    max_nan_retries: int
    lambda_adv: float
    lambda_cycle: float
    lambda_identity: float
    lambda_percep: float
    lambda_semantic: float
    sr: SRTrainConfig
    cyclegan: CycleGANTrainConfig

    def __post_init__(self) -> None:
        _require(self.device in ("auto", "cpu", "cuda"), "train.device", f"must be auto, cpu or cuda, got {self.device!r}")
        _require(self.max_nan_retries >= 0, "train.max_nan_retries", "must be >= 0")
        for name in ("lambda_adv", "lambda_cycle", "lambda_identity", "lambda_percep", "lambda_semantic"):
            _require(getattr(self, name) >= 0, f"train.{name}", "must be >= 0")


@dataclass(frozen=True)
class EvaluateConfig:
    device: str
    batch_size: int
    swd_descriptors_per_image: int
    swd_directions: int
    kid_subsets: int
    kid_subset_size: int
    downstream_steps: int
    downstream_seeds: int
    bootstrap_resamples: int
    bootstrap_set_resamples: int
    n_examples: int

    def __post_init__(self) -> None:
        _require(self.device in ("auto", "cpu", "cuda"), "evaluate.device", f"must be auto, cpu or cuda, got {self.device!r}")
        for name in ("batch_size", "swd_descriptors_per_image", "swd_directions", "kid_subsets",
                     "kid_subset_size", "downstream_steps", "downstream_seeds", "bootstrap_resamples",
                     "bootstrap_set_resamples", "n_examples"):
            _require(getattr(self, name) >= 1, f"evaluate.{name}", "must be >= 1")
        _require(self.kid_subset_size >= 2, "evaluate.kid_subset_size", "must be >= 2 (unbiased MMD needs pairs)")


@dataclass(frozen=True)
class Params:
    seed: int
    weights: WeightsConfig
    data: DataConfig
    segmenter: SegmenterConfig
    train: TrainConfig
    evaluate: EvaluateConfig


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (int -> float, dict -> dataclass)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_convert(item, item_tp, f"{key}[{i}]") for i, item in enumerate(value)]
    if tp is float:
        # bool is an int subclass: `true` is not a number here.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported annotation {tp!r}")


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{dotted(unknown[0])}: unknown key (expected one of {', '.join(names)})")
    missing = [name for name in names if name not in raw]
    if missing:
        raise ConfigError(f"{dotted(missing[0])}: missing key")
    values = {name: _convert(raw[name], hints[name], dotted(name)) for name in names}
    return cls(**values)


def params_from_dict(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping at the top level, got {type(raw).__name__}")
    return _build(Params, raw, "")


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml. Raises ConfigError naming the file and the dotted key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    try:
        return params_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def as_dict(section: Any) -> dict:
    """A section as plain JSON-able data (for resolved-config files and fingerprints)."""
    return dataclasses.asdict(section)


def fingerprint(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (config sections, data hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def section_keys(cls: type, prefix: str) -> list[str]:
    """Every dotted leaf key of a config dataclass, for the dvc.yaml consistency test."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}" if prefix else field.name
        tp = hints[field.name]
        keys.extend(section_keys(tp, key) if dataclasses.is_dataclass(tp) else [key])
    return keys

