"""Typed parameters: params.yaml validated by pydantic into frozen dataclasses (YAML lists become tuples).

Unknown and missing keys, wrong types, non-finite floats, bad choices and out-of-range values fail at
load time with the full dotted key (`train.lambda_cycle: expected float, got 'ten'`). Ints are accepted
where floats are expected (`dvc exp run -S train.lambda_cycle=10` writes `10`); bools and strings are
never numbers. One-field limits are field types (`PosInt`, `Literal[...]`); cross-field ones `_check`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml problem; the message starts with the dotted key."""


# Strictness is per leaf type: pydantic's model-wide strict mode would also refuse a mapping
# for a nested section. A strict float still takes an int (10 -> 10.0) and refuses a bool.
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
PosInt = Annotated[int, Strict(), Field(ge=1)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, lt=1)]  # [0, 1)


def _int_only(value: Any) -> Any:
    """For a Literal of ints: Strict() does not apply to one, and a lax one takes 4.0 for 4 and True for 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected int, got {value!r}")
    return value


# The choices, beside what they select. Config imports no building block, so tests/test_config.py
# checks that these equal the tables in src/losses and src/augment.
Device = Literal["auto", "cpu", "cuda"]
GanLoss = Literal["nonsaturating", "lsgan", "hinge"]  # adversarial.D_LOSSES, G_LOSSES
# The SR GAN also offers ESRGAN's relativistic average loss (adversarial.RELATIVISTIC_G_LOSSES): its G loss reads
# D on the real batch too, which the CycleGAN step does not compute.
SRGanLoss = Literal["nonsaturating", "lsgan", "hinge", "relativistic"]
PerceptualNetwork = Literal["vgg19", "hr_denoiser"]  # src/pretrained.py, src/models/hr_features.py
Encoder = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]  # smp U-Net encoders
VggLayer = Literal[  # perceptual.VGG19_LAYERS
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "conv2_1", "relu2_1", "conv2_2", "relu2_2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4",
]
GAN_LOSSES: tuple[str, ...] = typing.get_args(GanLoss)
SR_GAN_LOSSES: tuple[str, ...] = typing.get_args(SRGanLoss)
DIFFAUGMENT_OPS = ("color", "translation", "cutout")  # diffaugment.AUGMENT_FNS
VGG19_LAYER_NAMES: tuple[str, ...] = typing.get_args(VggLayer)


def _check_policy(policy: str) -> str:
    """A DiffAugment policy as diffaugment.parse_policy splits it: 'color,cutout'; '' for none."""
    ops = [op.strip() for op in policy.split(",")] if policy.strip() else []
    if any(op not in DIFFAUGMENT_OPS for op in ops):
        raise ValueError(f"must be '' (none) or comma-separated ops from {', '.join(DIFFAUGMENT_OPS)}, got {policy!r}")
    return policy


DiffAugmentPolicy = Annotated[str, Strict(), AfterValidator(_check_policy)]


def _check_amp(value: Any) -> Any:
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"must be auto, true or false, got {value!r}")


Amp = Annotated[Any, AfterValidator(_check_amp)]  # "auto" | True | False


def _check_processes(value: Any) -> Any:
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise ValueError(f"must be auto or a whole number >= 1, got {value!r}")


Processes = Annotated[Any, AfterValidator(_check_processes)]  # "auto" | int >= 1
Betas = tuple[Fraction, Fraction]
VggLayers = Annotated[tuple[VggLayer, ...], Field(min_length=1)]

# A params section: frozen, unknown keys refused, inf and nan refused in every float.
frozen_section = dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))


def _require(ok: bool, field: str, message: str) -> None:
    """A check across fields; `field` is relative to the section (two args: see _config_error)."""
    if not ok:
        raise ValueError(field, message)


@frozen_section
class WeightsConfig:
    vgg19_path: Str
    inception_path: Str
    resnet18_path: Str
    allow_download: Bool
    download_timeout_s: PosFloat


@frozen_section
class SimConfig:
    field_strength: Literal[1.5, 3.0]  # tesla: selects the T1/T2/PD table
    tr_ms: PosFloat
    te_ms: PosFloat
    noise_std: NonNegFloat
    elastic_magnitude: NonNegFloat
    variants_per_slice: PosInt

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        _require(self.te_ms < self.tr_ms, "te_ms", f"must be < data.sim.tr_ms = {self.tr_ms}, got {self.te_ms}")
        return self


@frozen_section
class DataConfig:
    source: Literal["mni152", "folder"]
    folder: Str
    axes: Annotated[tuple[Annotated[Literal[0, 1, 2], BeforeValidator(_int_only)], ...], Field(min_length=1)]
    image_size: Annotated[int, Strict(), Field(ge=16)]
    min_foreground: Fraction
    percentiles: tuple[Float, Float]
    split_fractions: tuple[PosFloat, PosFloat, PosFloat]
    split_gap: NonNegInt
    leakage: Literal["fail", "drop"]  # held-out slices copying another split's (src/data/leakage.py)
    max_volume_mib: PosFloat  # a volume larger than this as float32 is refused from its header, unread
    workers: NonNegInt  # prepare's processes reading and slicing volumes; 0: one per CPU core (outputs do not depend on it)
    sim_fraction: Annotated[float, Strict(), Field(gt=0, lt=1)]
    sim_block: PosInt
    scale: Annotated[Literal[2, 4, 8], BeforeValidator(_int_only)]
    degradation: Literal["kspace", "bicubic"]
    lr_noise_std: NonNegFloat
    classical_blur_sigma: NonNegFloat  # px; the classical sim-to-real baseline's partial-volume blur
    train_fraction: Annotated[float, Strict(), Field(gt=0, le=1)]  # of the train slices the GANs see (nested subsets)
    sim: SimConfig

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        _require(self.image_size % (8 * self.scale) == 0, "image_size",
                 f"must be divisible by 8 * data.scale = {8 * self.scale}, got {self.image_size}")
        low, high = self.percentiles
        _require(0 <= low < high <= 100, "percentiles",
                 f"must be [low, high] with 0 <= low < high <= 100, got {list(self.percentiles)}")
        _require(abs(sum(self.split_fractions) - 1) < 1e-6, "split_fractions",
                 f"must be three fractions summing to 1, got {list(self.split_fractions)}")
        # A repeated axis would put every slice of it into its split twice: a doubled test n, narrowed intervals.
        _require(len(set(self.axes)) == len(self.axes), "axes", f"must not repeat an axis, got {list(self.axes)}")
        return self


@frozen_section
class SegmenterConfig:
    encoder: Encoder
    encoder_depth: Annotated[Literal[3, 4, 5], BeforeValidator(_int_only)]
    decoder_channels: tuple[PosInt, ...]
    steps: PosInt
    batch_size: PosInt
    crop_size: PosInt
    lr: PosFloat
    weight_decay: NonNegFloat
    # true: train_segmenter trains on SynthSeg-style images drawn from the sim labels every batch
    # (ranges below), not on the sim rendering: a contrast-agnostic U-Net for the semantic term.
    randomize: Bool
    randomization: RandomizationConfig

    @model_validator(mode="after")
    def _check(self) -> SegmenterConfig:
        _require(len(self.decoder_channels) == self.encoder_depth, "decoder_channels",
                 f"needs one entry per encoder stage ({self.encoder_depth}), got {len(self.decoder_channels)}")
        _require(self.crop_size % 2 ** self.encoder_depth == 0, "crop_size",
                 f"must be divisible by 2**encoder_depth = {2 ** self.encoder_depth}, got {self.crop_size}")
        return self


def _check_patch_d(cfg: SRTrainConfig | CycleGANTrainConfig) -> None:
    downsample = getattr(cfg, "d_downsample", 1)
    factor = downsample * 2 ** cfg.d_layers
    what = f"d_downsample * 2**d_layers = {factor}" if downsample > 1 else f"2**d_layers = {factor}"
    _require(cfg.crop_size % factor == 0, "crop_size", f"must be divisible by {what}, got {cfg.crop_size}")
    _require(cfg.crop_size >= 3 * factor, "crop_size",
             f"must be >= 3 * {what} (a PatchGAN map of at least 1x1), got {cfg.crop_size}")


@frozen_section
class SRTrainConfig:
    crop_size: PosInt
    batch_size: PosInt
    g_blocks: PosInt
    g_channels: PosInt
    d_channels: PosInt
    d_layers: PosInt
    d_highpass_sigma: NonNegFloat  # > 0: D judges only x - gaussian_blur(x, sigma px); 0: whole images
    d_highpass_compress: NonNegFloat  # > 0: D judges asinh(high-pass / this) instead of 4 x high-pass (needs sigma > 0)
    data_consistency: Bool  # k-space only: the output keeps the measured k-space band exactly
    data_consistency_band: Annotated[float, Strict(), Field(gt=0, le=1)]  # ... below this fraction of the cut-off
    clamp_output: Bool      # G's output clamped to the data range [-1, 1] in training too (evaluation always clamps)
    # The GAN phase's G: false drops the projection there (the PSNR model keeps it); true clamps it there too.
    gan_data_consistency: Bool
    gan_clamp_output: Bool
    psnr_steps: PosInt
    warmup_steps: NonNegInt  # linear lr warm-up of the PSNR phase, then cosine decay
    gan_steps: NonNegInt
    lr_psnr: PosFloat
    lr_gan: PosFloat  # G's lr in the GAN phase
    lr_d: PosFloat    # D's own lr (two time-scale update rule, Heusel et al. 2017)
    betas: Betas
    lambda_pixel: NonNegFloat
    lambda_percep: NonNegFloat
    lambda_adv: NonNegFloat
    lambda_consistency: NonNegFloat  # GAN phase: L1 between SR's and HR's measured band (both degraded alike)
    perceptual_network: PerceptualNetwork  # vgg19 (ImageNet when its file exists) | hr_denoiser (trained here)
    hr_denoiser_steps: PosInt              # Adam steps of the hr_denoiser on the HR train crops
    vgg_layers: VggLayers
    gan_loss: SRGanLoss
    spectral_norm: Bool
    r1_gamma: NonNegFloat
    label_smoothing: Annotated[float, Strict(), Field(ge=0, lt=0.5)]
    instance_noise: NonNegFloat
    diffaugment: DiffAugmentPolicy
    ema_decay: Fraction
    log_every: PosInt
    d_val_every: NonNegInt  # GAN steps between scorings of D on val crops (src/training/d_monitor.py); 0: never
    sample_every: PosInt
    checkpoint_every: PosInt

    @model_validator(mode="after")
    def _check(self) -> SRTrainConfig:
        _check_patch_d(self)
        _require(self.d_highpass_compress == 0 or self.d_highpass_sigma > 0, "d_highpass_compress",
                 f"compresses the high-pass front end's output, so it needs d_highpass_sigma > 0; got "
                 f"{self.d_highpass_compress} with d_highpass_sigma 0")
        # The loop averages stats over log_every steps: one scoring per logged row keeps val/d_auc a measurement.
        _require(self.d_val_every == 0 or self.d_val_every >= self.log_every, "d_val_every",
                 f"must be 0 (off) or >= log_every ({self.log_every}), so that a logged row holds one scoring of D; "
                 f"got {self.d_val_every}")
        return self


@frozen_section
class CycleGANTrainConfig:
    crop_size: PosInt
    batch_size: PosInt
    g_blocks: PosInt
    g_channels: PosInt
    residual: Bool
    intensity_hidden: NonNegInt  # > 0: pointwise intensity branch of this width beside the refiner's residual
    intensity_lr: PosFloat       # Adam lr of that branch (the rest of G and D: lr)
    reconstruction_beta: NonNegFloat  # cycle/identity loss: Huber with this beta; 0 = plain L1
    d_channels: PosInt
    d_layers: PosInt
    d_downsample: PosInt   # D average-pools its input by this factor first (global scale, pix2pixHD)
    steps: PosInt
    decay_start: NonNegInt
    cycle_warmup_steps: NonNegInt  # lambda_cycle ramps linearly from 0 over these steps; 0 = full weight from the start
    cycle_delay_steps: NonNegInt   # lambda_cycle is 0 for these first steps, then the ramp starts
    pointwise_steps: NonNegInt     # the generators are their intensity branch alone for these first steps
                                   # (>= steps: the whole run pointwise)
    lr: PosFloat
    betas: Betas
    gan_loss: GanLoss
    spectral_norm: Bool
    pool_size: NonNegInt
    vgg_layers: VggLayers
    diffaugment: DiffAugmentPolicy
    log_every: PosInt
    sample_every: PosInt
    checkpoint_every: PosInt

    @model_validator(mode="after")
    def _check(self) -> CycleGANTrainConfig:
        _check_patch_d(self)
        _require(self.crop_size % 4 == 0, "crop_size", f"must be divisible by 4 (two down-samplings), got {self.crop_size}")
        _require(self.decay_start <= self.steps, "decay_start",
                 f"must be in [0, train.cyclegan.steps = {self.steps}], got {self.decay_start}")
        _require(self.cycle_warmup_steps <= self.steps, "cycle_warmup_steps",
                 f"must be in [0, train.cyclegan.steps = {self.steps}], got {self.cycle_warmup_steps}")
        _require(self.cycle_delay_steps + self.cycle_warmup_steps <= self.steps, "cycle_delay_steps",
                 f"+ cycle_warmup_steps must be <= train.cyclegan.steps = {self.steps}, got "
                 f"{self.cycle_delay_steps} + {self.cycle_warmup_steps}")
        _require(self.pointwise_steps == 0 or (self.intensity_hidden > 0 and self.residual), "pointwise_steps",
                 f"needs the refiner with an intensity branch (residual: true, intensity_hidden > 0), got "
                 f"{self.pointwise_steps} with residual {self.residual}, intensity_hidden {self.intensity_hidden}")
        _require(self.intensity_hidden == 0 or self.residual, "intensity_hidden",
                 f"needs the refiner (train.cyclegan.residual: true), got {self.intensity_hidden} with residual false")
        return self


@frozen_section
class TrainConfig:
    device: Device
    amp: Amp   # bf16 autocast: auto = where the hardware runs bf16 natively
    nproc: PosInt        # processes per node for the training stages (torchrun; DDP when > 1)
    num_workers: NonNegInt  # DataLoader worker processes per rank (0: batches are read in the training process)
    resume: Bool
    max_nan_retries: NonNegInt
    lambda_adv: NonNegFloat
    lambda_cycle: NonNegFloat
    lambda_identity: NonNegFloat
    lambda_percep: NonNegFloat
    lambda_semantic: NonNegFloat
    lambda_structure: NonNegFloat  # MIND structure term (CycleGAN): contrast-invariant content
    sr: SRTrainConfig
    cyclegan: CycleGANTrainConfig


Range = tuple[NonNegFloat, NonNegFloat]


@frozen_section
class RandomizationConfig:
    """SynthSeg-style ranges of the `randomized` downstream row (src/augment/randomization.py)."""

    tissue_mean: Range      # per-tissue mean intensity on a [0, 1] scale
    tissue_std: Range       # within-tissue std (texture)
    t1_ordering: Bool       # sort the drawn means so CSF < GM < WM
    bias_field_std: NonNegFloat
    bias_field_grid: Annotated[int, Strict(), Field(ge=2)]
    blur_sigma: Range       # px
    gamma_log_std: NonNegFloat
    noise_std: Range

    @model_validator(mode="after")
    def _check(self) -> RandomizationConfig:
        for name in ("tissue_mean", "tissue_std", "blur_sigma", "noise_std"):
            low, high = getattr(self, name)
            _require(low <= high, name, f"must be [low, high] with low <= high, got {[low, high]}")
        return self


# A 95 % percentile interval needs resamples beyond both of its bounds: at least 1 / 0.025 = 40 of them. With
# fewer, the interval collapses to the extreme resamples (at 1 resample: zero width, and every comparison would
# still get a verdict).
MIN_RESAMPLES = 40
Resamples = Annotated[int, Strict(), Field(ge=MIN_RESAMPLES)]


@frozen_section
class EvaluateConfig:
    device: Device
    batch_size: PosInt
    swd_descriptors_per_image: PosInt
    swd_directions: PosInt
    kid_subsets: PosInt
    kid_subset_size: Annotated[int, Strict(), Field(ge=2)]  # the unbiased MMD estimate needs pairs
    downstream_steps: PosInt
    downstream_seeds: PosInt
    downstream_processes: Processes  # processes training the downstream U-Nets at once
    randomization: RandomizationConfig
    bootstrap_resamples: Resamples
    bootstrap_set_resamples: Resamples
    n_examples: PosInt


@frozen_section
class Params:
    # numpy refuses negative seeds; torch takes at most 64 bits, and stages derive seed + k (a few thousand at most)
    seed: Annotated[int, Strict(), Field(ge=0, lt=2 ** 32)]
    weights: WeightsConfig
    data: DataConfig
    segmenter: SegmenterConfig
    train: TrainConfig
    evaluate: EvaluateConfig


    @model_validator(mode="after")
    def _check(self) -> Params:
        # Across sections: the SR crop is cut at LR resolution, so a crop that data.scale does not divide would
        # silently train on a smaller one than config.json records.
        crop, scale = self.train.sr.crop_size, self.data.scale
        _require(crop % scale == 0, "train.sr.crop_size",
                 f"must be a multiple of data.scale = {scale} (the LR crop is crop_size / scale), got {crop}")
        return self


_PARAMS = TypeAdapter(Params)
_TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
               "tuple_type": "a list", "dataclass_type": "a mapping"}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}


def _field_names(loc: tuple) -> list[str]:
    """The keys of the section at `loc` (a path of field names from Params)."""
    cls = Params
    for name in loc:
        cls = typing.get_type_hints(cls)[name]
    return [field.name for field in dataclasses.fields(cls)]


def _config_error(err: ValidationError) -> ConfigError:
    """The first of pydantic's errors (an unknown key before anything else) as 'dotted.key: message'."""
    error = sorted(err.errors(), key=lambda e: e["type"] != "unexpected_keyword_argument")[0]
    loc, kind, ctx, got = error["loc"], error["type"], error.get("ctx", {}), error["input"]
    if kind == "missing" and isinstance(loc[-1], int):  # a fixed-length list, too short
        loc, message = loc[:-1], f"too few items, got {got!r}"
    elif kind == "missing":
        message = "missing key"
    elif kind == "unexpected_keyword_argument":
        message = f"unknown key (expected one of {', '.join(_field_names(loc[:-1]))})"
    elif kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {got!r}"
    elif kind == "finite_number":
        message = f"must be finite, got {got!r}"
    elif kind == "literal_error":
        message = f"must be {ctx['expected']}, got {got!r}"
    elif kind in _BOUNDS:
        bound, op = _BOUNDS[kind]
        message = f"must be {op} {ctx[bound]:g}, got {got!r}"
    elif kind == "too_short":
        message = f"must have at least {ctx['min_length']} item(s), got {got!r}"
    elif kind == "too_long":
        message = f"must have at most {ctx['max_length']} items, got {got!r}"
    elif kind == "value_error":
        args = ctx["error"].args  # (field, message) from _require, (message,) from a field validator
        loc, message = (*loc, *args[:-1]), args[-1]
    else:
        message = f"{error['msg']}, got {got!r}"
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return ConfigError(f"{key or 'params'}: {message}")


def params_from_dict(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return _PARAMS.validate_python(raw)
    except ValidationError as err:
        raise _config_error(err) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; DVC's own parser refuses such a file."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.YAMLError(f"key {key!r} is written twice in one mapping (lines {seen[key]} and {line}); "
                                     "YAML would silently keep the last")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml. Raises ConfigError naming the file and the dotted key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    try:
        return params_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def as_dict(section: Any) -> dict:
    """A section (any dataclass) as plain JSON data, tuples as lists (resolved-config files, fingerprints)."""
    return json.loads(json.dumps(dataclasses.asdict(section), default=str))


def fingerprint(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (config sections, data hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

