"""Config loader: errors name the dotted key; ints are accepted as floats; sections are frozen."""

import copy
import dataclasses
import hashlib
import json
import math
import re
import typing

import pytest
import yaml

from src.config import (DIFFAUGMENT_OPS, GAN_LOSSES, SR_GAN_LOSSES, VGG19_LAYER_NAMES, ConfigError, Encoder, Params, as_dict,
                        fingerprint, load_params, params_from_dict)

RAW = yaml.safe_load(open("params.yaml"))


def with_change(path: str, value):
    raw = copy.deepcopy(RAW)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


def at(node, path: str):
    """The raw dict or typed section at a dotted path."""
    for part in path.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the raw params.yaml."""
    keys = []
    for name, value in node.items():
        key = f"{prefix}.{name}" if prefix else name
        keys.extend(leaf_keys(value, key) if isinstance(value, dict) else [key])
    return keys


def test_repository_params_load():
    params = load_params("params.yaml")
    raw = yaml.safe_load(open("params.yaml"))
    assert params.train.lambda_cycle == raw["train"]["lambda_cycle"]
    assert isinstance(params.train.lambda_cycle, float)


def test_wrong_type_names_full_dotted_key():
    with pytest.raises(ConfigError, match=r"^train\.lambda_cycle: expected float, got 'ten'$"):
        params_from_dict(with_change("train.lambda_cycle", "ten"))


def test_int_accepted_where_float_expected():
    # `dvc exp run -S train.lambda_cycle=10` writes an int.
    params = params_from_dict(with_change("train.lambda_cycle", 10))
    assert params.train.lambda_cycle == 10.0 and isinstance(params.train.lambda_cycle, float)
    params = params_from_dict(with_change("data.sim.field_strength", 3))
    assert params.data.sim.field_strength == 3.0 and isinstance(params.data.sim.field_strength, float)


def test_float_not_accepted_where_int_expected():
    with pytest.raises(ConfigError, match=r"^train\.sr\.batch_size: expected int"):
        params_from_dict(with_change("train.sr.batch_size", 8.5))
    # A whole float is not an int either, also for an int choice.
    with pytest.raises(ConfigError, match=r"^train\.sr\.batch_size: expected int, got 8\.0$"):
        params_from_dict(with_change("train.sr.batch_size", 8.0))
    with pytest.raises(ConfigError, match=r"^data\.scale: expected int, got 4\.0$"):
        params_from_dict(with_change("data.scale", 4.0))


def test_bool_is_not_a_number():
    with pytest.raises(ConfigError, match=r"^train\.sr\.lr_gan: expected float, got True"):
        params_from_dict(with_change("train.sr.lr_gan", True))
    with pytest.raises(ConfigError, match=r"^data\.axes\[0\]: expected int, got True$"):
        params_from_dict(with_change("data.axes", [True]))  # True == 1 would pass a lax choice of 0, 1, 2


def test_yaml_exponent_without_dot_is_a_string_and_rejected():
    raw = yaml.safe_load("x: 1e-4")
    assert raw["x"] == "1e-4"  # the PyYAML trap the loader must catch
    with pytest.raises(ConfigError, match=r"^train\.cyclegan\.lr: expected float, got '1e-4'"):
        params_from_dict(with_change("train.cyclegan.lr", raw["x"]))


def test_unknown_key_rejected():
    raw = with_change("train.lambda_cylce", 5.0)
    with pytest.raises(ConfigError, match=r"^train\.lambda_cylce: unknown key \(expected one of device, amp, .*lambda_cycle"):
        params_from_dict(raw)


def test_misspelt_key_reported_as_unknown_not_missing():
    raw = with_change("train.lambda_cycle", KeyError)
    raw["train"]["lambda_cylce"] = 10.0
    with pytest.raises(ConfigError, match=r"^train\.lambda_cylce: unknown key"):
        params_from_dict(raw)


def test_missing_key_rejected():
    with pytest.raises(ConfigError, match=r"^data\.sim\.tr_ms: missing key$"):
        params_from_dict(with_change("data.sim.tr_ms", KeyError))


def test_list_item_type_named_with_index():
    with pytest.raises(ConfigError, match=r"^data\.axes\[1\]: expected int"):
        params_from_dict(with_change("data.axes", [2, "z"]))
    with pytest.raises(ConfigError, match=r"^data\.split_fractions: too few items, got \[0\.5, 0\.5\]$"):
        params_from_dict(with_change("data.split_fractions", [0.5, 0.5]))


@pytest.mark.parametrize("text,shown", [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan")])
def test_non_finite_float_rejected(tmp_path, text, shown):
    source = tmp_path / "p.yaml"
    source.write_text(re.sub(r"lambda_cycle: [0-9.]+", f"lambda_cycle: {text}", open("params.yaml").read(), count=1))
    with pytest.raises(ConfigError, match=rf"p\.yaml: train\.lambda_cycle: must be finite, got {shown}$"):
        load_params(source)


@pytest.mark.parametrize("path,value,key", [
    ("train.sr.betas", [0.9, math.inf], "train.sr.betas[1]"),
    ("data.percentiles", [math.nan, 99.5], "data.percentiles[0]"),
    ("data.sim.tr_ms", math.inf, "data.sim.tr_ms"),
])
def test_non_finite_float_rejected_everywhere(path, value, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": must be finite"):
        params_from_dict(with_change(path, value))


# One bad value for every range and cross-field check.
RANGE_CASES = [
    ("weights.download_timeout_s", 0.0),
    ("data.sim.field_strength", 7.0), ("data.sim.tr_ms", 0.0), ("data.sim.te_ms", 5000.0), ("data.sim.te_ms", 0.0),
    ("data.sim.noise_std", -0.1), ("data.sim.elastic_magnitude", -1.0), ("data.sim.variants_per_slice", 0),
    ("data.axes", []), ("data.scale", 3), ("data.image_size", 8), ("data.image_size", 100),
    ("data.min_foreground", 1.0), ("data.min_foreground", -0.1), ("data.percentiles", [99.5, 0.5]),
    ("data.percentiles", [0.5, 100.5]), ("data.split_fractions", [0.5, 0.5, 0.5]), ("data.split_fractions", [1.0, 0.0, 0.0]),
    ("data.split_gap", -1), ("data.sim_fraction", 0.0), ("data.sim_fraction", 1.0), ("data.sim_block", 0),
    ("data.lr_noise_std", -0.1),
    ("segmenter.encoder_depth", 6), ("segmenter.decoder_channels", [8, 8]), ("segmenter.steps", 0),
    ("segmenter.batch_size", 0), ("segmenter.crop_size", 60), ("segmenter.lr", 0.0),
    ("segmenter.randomization.tissue_mean", [1.0, 0.0]), ("segmenter.randomization.bias_field_grid", 1),
    ("segmenter.randomization.noise_std", [-0.1, 0.0]), ("train.cyclegan.cycle_warmup_steps", 10_000),
    ("train.cyclegan.cycle_warmup_steps", -1), ("train.cyclegan.cycle_delay_steps", -1),
    ("train.cyclegan.cycle_delay_steps", 10_000), ("train.cyclegan.pointwise_steps", -1),
    # d_downsample 2 x 2**3 = 16: 136 is not a multiple; 32 leaves the pooled crop no 1x1 map; 0 is no factor.
    ("train.cyclegan.d_downsample", 0), ("train.cyclegan.crop_size", 136), ("train.cyclegan.crop_size", 32),
    *[(f"train.{gan}.{name}", value) for gan in ("sr", "cyclegan") for name, value in [
        ("gan_loss", "wgan"), ("batch_size", 0), ("log_every", 0), ("sample_every", 0), ("checkpoint_every", 0),
        ("betas", [0.9, 1.0]), ("betas", [-0.1, 0.9]), ("vgg_layers", []), ("d_layers", 0), ("crop_size", 66),
        ("g_blocks", 0)]],
    ("train.sr.psnr_steps", 0), ("train.sr.gan_steps", -1), ("train.sr.lr_psnr", 0.0), ("train.sr.lr_gan", 0.0),
    ("train.sr.lambda_pixel", -1.0), ("train.sr.lambda_percep", -1.0), ("train.sr.lambda_adv", -1.0),
    ("train.sr.r1_gamma", -1.0), ("train.sr.instance_noise", -1.0), ("train.sr.label_smoothing", 0.5),
    ("train.sr.ema_decay", 1.0),
    ("train.sr.d_val_every", -1), ("train.sr.d_val_every", 5),   # 5 < log_every 10: two scorings in one logged row
    ("train.sr.d_highpass_compress", -0.01), ("train.sr.clamp_output", "yes"),
    ("train.sr.gan_data_consistency", "no"), ("train.sr.gan_clamp_output", 1), ("train.sr.lambda_consistency", -1.0),
    ("train.cyclegan.steps", 0), ("train.cyclegan.decay_start", 10_000), ("train.cyclegan.decay_start", -1),
    ("train.cyclegan.lr", 0.0), ("train.cyclegan.pool_size", -1), ("train.cyclegan.intensity_hidden", -1),
    ("train.device", "gpu"), ("train.max_nan_retries", -1),
    *[(f"train.lambda_{name}", -1.0) for name in ("adv", "cycle", "identity", "percep", "semantic")],
    ("evaluate.device", "gpu"), ("evaluate.kid_subset_size", 1),
    *[("evaluate.downstream_processes", value) for value in (0, "all", 2.5, True)],
    *[(f"evaluate.{name}", 0) for name in ("batch_size", "swd_descriptors_per_image", "swd_directions", "kid_subsets",
                                           "downstream_steps", "downstream_seeds", "bootstrap_resamples",
                                           "bootstrap_set_resamples", "n_examples")],
]


def test_d_val_every_is_off_or_at_least_one_logged_row_apart():
    for value in (0, 10, 15, 80):   # log_every is 10
        assert params_from_dict(with_change("train.sr.d_val_every", value)).train.sr.d_val_every == value
    with pytest.raises(ConfigError, match=r"^train\.sr\.d_val_every: must be 0 \(off\) or >= log_every \(10\).*got 9$"):
        params_from_dict(with_change("train.sr.d_val_every", 9))


def test_compressing_the_high_pass_needs_a_high_pass():
    raw = with_change("train.sr.d_highpass_sigma", 0.0)
    raw["train"]["sr"]["d_highpass_compress"] = 0.01
    with pytest.raises(ConfigError, match=r"^train\.sr\.d_highpass_compress: .*needs d_highpass_sigma > 0"):
        params_from_dict(raw)
    raw["train"]["sr"]["d_highpass_compress"] = 0.0   # the whole-image D, uncompressed
    assert params_from_dict(raw).train.sr.d_highpass_sigma == 0.0


@pytest.mark.parametrize("path,value", RANGE_CASES)
def test_value_checks_name_their_key(path, value):
    with pytest.raises(ConfigError, match="^" + re.escape(path) + r"(\[\d+\])?: "):
        params_from_dict(with_change(path, value))


@pytest.mark.parametrize("path,value,message", [
    ("data.degradation", "blur", "must be 'kspace' or 'bicubic', got 'blur'"),
    ("data.source", "nifti", "must be 'mni152' or 'folder', got 'nifti'"),
    ("data.scale", 3, "must be 2, 4 or 8, got 3"),
    ("data.axes", [3], "must be 0, 1 or 2, got 3"),
    ("train.device", "gpu", "must be 'auto', 'cpu' or 'cuda', got 'gpu'"),
    ("evaluate.device", "tpu", "must be 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ("train.cyclegan.gan_loss", "wgan", "must be 'nonsaturating', 'lsgan' or 'hinge', got 'wgan'"),
    # ESRGAN's relativistic loss is the SR GAN's alone: the CycleGAN step does not score the real batch for G.
    ("train.cyclegan.gan_loss", "relativistic", "must be 'nonsaturating', 'lsgan' or 'hinge', got 'relativistic'"),
    ("train.sr.gan_loss", "wgan", "must be 'nonsaturating', 'lsgan', 'hinge' or 'relativistic', got 'wgan'"),
    ("segmenter.encoder", "vgg16", "must be 'resnet18', 'resnet34', 'resnet50', 'resnet101' or 'resnet152', got 'vgg16'"),
    ("segmenter.encoder_depth", 2, "must be 3, 4 or 5, got 2"),
    ("train.sr.vgg_layers", ["relu2_2", "relu9_9"], "must be 'conv1_1', .* or 'relu5_4', got 'relu9_9'"),
    ("train.cyclegan.vgg_layers", ["relu2_2", "relu9_9"], "must be 'conv1_1', .* or 'relu5_4', got 'relu9_9'"),
    ("train.sr.diffaugment", "color,flip", "must be '' (none) or comma-separated ops from color, translation, cutout, "
                                           "got 'color,flip'"),
    ("train.cyclegan.diffaugment", "color translation", "must be '' (none) or comma-separated ops"),
])
def test_choices_checked_at_load(path, value, message):
    key = path + ("[1]" if path.endswith("vgg_layers") else "[0]" if path == "data.axes" else "")
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": " + message.replace("(", r"\(").replace(")", r"\)")):
        params_from_dict(with_change(path, value))


@pytest.mark.parametrize("policy", ["", "  ", "color", "cutout,color", " color , translation ", "color,color"])
def test_diffaugment_policies_accepted_as_diffaugment_parses_them(policy):
    from src.augment.diffaugment import parse_policy

    parse_policy(policy)  # raises if diffaugment itself refuses it
    assert params_from_dict(with_change("train.sr.diffaugment", policy)).train.sr.diffaugment == policy


@pytest.mark.parametrize("policy", ["flip", "color,", ",color", "color;cutout", "Color"])
def test_diffaugment_policies_refused_as_diffaugment_refuses_them(policy):
    from src.augment.diffaugment import parse_policy

    with pytest.raises(ValueError):
        parse_policy(policy)
    with pytest.raises(ConfigError, match=r"^train\.sr\.diffaugment: "):
        params_from_dict(with_change("train.sr.diffaugment", policy))


def test_choice_names_match_the_implementations():
    # Config imports no building block; these keep its lists from drifting from the real tables.
    import segmentation_models_pytorch as smp

    from src.augment.diffaugment import AUGMENT_FNS
    from src.losses.adversarial import D_LOSSES, G_LOSSES, RELATIVISTIC_G_LOSSES
    from src.losses.perceptual import VGG19_LAYERS

    assert DIFFAUGMENT_OPS == tuple(AUGMENT_FNS)
    assert VGG19_LAYER_NAMES == tuple(VGG19_LAYERS)
    assert set(GAN_LOSSES) == set(G_LOSSES)
    assert set(SR_GAN_LOSSES) == set(D_LOSSES) == set(G_LOSSES) | set(RELATIVISTIC_G_LOSSES)
    assert set(typing.get_args(Encoder)) <= set(smp.encoders.encoders)


def _str_fields(cls, prefix=""):
    """Dotted keys of the fields typed as free text (plain str, not a Literal choice)."""
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        key = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(base):
            yield from _str_fields(base, key)
        elif base is str:
            yield key


@pytest.mark.parametrize("value", ["auto", True, False])
def test_amp_takes_auto_true_or_false(value):
    assert params_from_dict(with_change("train.amp", value)).train.amp == value


def test_every_free_text_param_is_a_path_or_a_checked_policy():
    # A new str field must be a Literal choice, or be added here with its own check.
    assert sorted(_str_fields(Params)) == sorted([
        "weights.vgg19_path", "weights.inception_path", "weights.resnet18_path", "data.folder",
        "train.sr.diffaugment", "train.cyclegan.diffaugment",  # checked by the policy validator (tests above)
    ])


@pytest.mark.parametrize("key", leaf_keys(RAW))
def test_any_bad_value_is_a_config_error_naming_its_key(key):
    for value in (None, "x", [], {}, True, math.nan, -1, [None]):
        try:
            params_from_dict(with_change(key, value))
        except ConfigError as err:  # anything else (a pydantic ValidationError, a TypeError) fails the test
            assert re.match(re.escape(key) + r"(\[\d+\])?: ", str(err)), (value, str(err))


def wrong_types(value) -> list:
    """Values of the wrong type for a leaf holding `value`: no coercion from str or bool, nor to them."""
    if isinstance(value, bool):
        return [1, "true"]
    if isinstance(value, (int, float)):
        return ["1", True] + ([1.5] if isinstance(value, int) else [])
    if isinstance(value, str):
        return [1, True, b"x"]  # bytes: YAML's !!binary
    return [[bad] * len(value) for bad in wrong_types(value[0])]


# Choices that mix types (train.amp: auto | true | false): the generic wrong types would include a valid one.
MIXED_CHOICE_WRONG_VALUES = {"train.amp": [1, 0, "yes", "True", b"x", 0.5],
                             "evaluate.downstream_processes": ["2", "Auto", True, 1.0, b"x", None]}


@pytest.mark.parametrize("key", leaf_keys(RAW))
def test_every_param_refuses_wrong_types(key):
    for value in MIXED_CHOICE_WRONG_VALUES.get(key) or wrong_types(at(RAW, key)):
        bad = value[0] if isinstance(value, list) else value
        # The message shows the offending value as given, not as some coercion made it.
        with pytest.raises(ConfigError, match=re.escape(key) + r"(\[\d+\])?: (expected|must be) .*, got "
                           + re.escape(repr(bad)) + "$"):
            params_from_dict(with_change(key, value))


@pytest.mark.parametrize("section", [*sorted(RAW.keys() - {"seed"}), "data.sim", "train.sr", "train.cyclegan",
                                     "segmenter.randomization"])
def test_unknown_and_missing_keys_named_in_every_section(section):
    with pytest.raises(ConfigError, match="^" + re.escape(section) + r"\.extra: unknown key \(expected one of "):
        params_from_dict(with_change(f"{section}.extra", 1))
    first = next(iter(at(RAW, section)))
    with pytest.raises(ConfigError, match="^" + re.escape(f"{section}.{first}") + ": missing key$"):
        params_from_dict(with_change(f"{section}.{first}", KeyError))
    with pytest.raises(ConfigError, match="^" + re.escape(section) + ": expected a mapping, got 3$"):
        params_from_dict(with_change(section, 3))


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"^params: expected a mapping at the top level, got list$"):
        params_from_dict([1, 2])
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml: params: expected a mapping at the top level, got NoneType"):
        load_params(empty)


def test_sections_are_frozen_and_hold_tuples():
    params = load_params("params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lambda_cycle = 1.0
    assert params.data.axes == (2,) and params.train.sr.betas == (0.9, 0.99)
    for value in (params.data.percentiles, params.data.split_fractions, params.segmenter.decoder_channels,
                  params.train.sr.vgg_layers, params.train.cyclegan.betas):
        assert isinstance(value, tuple)
    hash(params)  # tuples, not lists: a section is hashable


def test_replace_revalidates():
    sim = load_params("params.yaml").data.sim
    assert dataclasses.replace(sim, noise_std=0.0).noise_std == 0.0
    with pytest.raises(ValueError):
        dataclasses.replace(sim, noise_std=-1.0)


def reference_fingerprint(*parts) -> str:
    """fingerprint() re-derived from its definition, for parts that are already plain JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("section", ["weights", "data", "data.sim", "segmenter", "train", "train.sr", "train.cyclegan",
                                     "evaluate"])
def test_as_dict_and_fingerprint_equal_those_of_the_raw_yaml(section):
    # Checkpoints resume by fingerprint: the typed config must hash exactly as the YAML it came from
    # (lists, not tuples; floats written as floats), or every run would start fresh.
    params = load_params("params.yaml")
    typed, raw = as_dict(at(params, section)), at(RAW, section)
    assert typed == raw
    assert json.dumps(typed) == json.dumps(raw)  # same types too: 10.0 stays 10.0, [2] stays a list
    assert fingerprint(typed, params.seed) == reference_fingerprint(raw, RAW["seed"])


def test_int_override_fingerprints_as_the_float_it_stands_for():
    # `dvc exp run -S train.lambda_cycle=10` and `lambda_cycle: 10.0` are the same run.
    from_int = params_from_dict(with_change("train.lambda_cycle", 10))
    assert fingerprint(as_dict(from_int.train)) == reference_fingerprint(with_change("train.lambda_cycle", 10.0)["train"])


def test_load_params_names_the_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump(with_change("evaluate.batch_size", "many")))
    with pytest.raises(ConfigError, match=r"p\.yaml: evaluate\.batch_size: expected int"):
        load_params(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "missing.yaml")


def test_intensity_branch_needs_the_refiner():
    raw = with_change("train.cyclegan.intensity_hidden", 16)
    raw["train"]["cyclegan"]["residual"] = False
    raw["train"]["cyclegan"]["pointwise_steps"] = 0
    with pytest.raises(ConfigError, match=r"^train\.cyclegan\.intensity_hidden: needs the refiner "
                                          r"\(train\.cyclegan\.residual: true\), got 16 with residual false$"):
        params_from_dict(raw)
    raw["train"]["cyclegan"]["intensity_hidden"] = 0
    assert params_from_dict(raw).train.cyclegan.residual is False


def test_pointwise_phase_needs_the_intensity_branch():
    raw = with_change("train.cyclegan.pointwise_steps", 100)
    raw["train"]["cyclegan"]["intensity_hidden"] = 0
    with pytest.raises(ConfigError, match=r"^train\.cyclegan\.pointwise_steps: needs the refiner with an intensity "
                                          r"branch .* got 100 with residual True, intensity_hidden 0$"):
        params_from_dict(raw)
    raw["train"]["cyclegan"]["intensity_hidden"] = 8
    assert params_from_dict(raw).train.cyclegan.pointwise_steps == 100
    # Above steps is the whole run pointwise: a shorter run (the fault suite's 20 steps) needs no pointwise_steps.
    raw["train"]["cyclegan"].update(steps=20, decay_start=20, cycle_warmup_steps=0)
    assert params_from_dict(raw).train.cyclegan.pointwise_steps == 100
