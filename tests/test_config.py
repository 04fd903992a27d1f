"""Config loader: errors name the dotted key; ints are accepted as floats; sections are frozen."""

import copy
import re
import dataclasses

import pytest
import yaml

from src.config import ConfigError, load_params, params_from_dict

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


def test_repository_params_load():
    params = load_params("params.yaml")
    assert params.train.lambda_cycle == 10.0
    assert isinstance(params.train.lambda_cycle, float)


def test_wrong_type_names_full_dotted_key():
    with pytest.raises(ConfigError, match=r"^train\.lambda_cycle: expected float, got 'ten'$"):
        params_from_dict(with_change("train.lambda_cycle", "ten"))


def test_int_accepted_where_float_expected():
    # `dvc exp run -S train.lambda_cycle=10` writes an int.
    params = params_from_dict(with_change("train.lambda_cycle", 10))
    assert params.train.lambda_cycle == 10.0 and isinstance(params.train.lambda_cycle, float)


def test_float_not_accepted_where_int_expected():
    with pytest.raises(ConfigError, match=r"^train\.sr\.batch_size: expected int"):
        params_from_dict(with_change("train.sr.batch_size", 8.5))


def test_bool_is_not_a_number():
    with pytest.raises(ConfigError, match=r"^train\.sr\.lr_gan: expected float, got True"):
        params_from_dict(with_change("train.sr.lr_gan", True))


def test_yaml_exponent_without_dot_is_a_string_and_rejected():
    raw = yaml.safe_load("x: 1e-4")
    assert raw["x"] == "1e-4"  # the PyYAML trap the loader must catch
    with pytest.raises(ConfigError, match=r"^train\.cyclegan\.lr: expected float, got '1e-4'"):
        params_from_dict(with_change("train.cyclegan.lr", raw["x"]))


def test_unknown_key_rejected():
    raw = with_change("train.lambda_cylce", 5.0)
    with pytest.raises(ConfigError, match=r"^train\.lambda_cylce: unknown key"):
        params_from_dict(raw)


def test_missing_key_rejected():
    with pytest.raises(ConfigError, match=r"^data\.sim\.tr_ms: missing key$"):
        params_from_dict(with_change("data.sim.tr_ms", KeyError))


def test_list_item_type_named_with_index():
    with pytest.raises(ConfigError, match=r"^data\.axes\[1\]: expected int"):
        params_from_dict(with_change("data.axes", [2, "z"]))


@pytest.mark.parametrize("path,value,key", [
    ("data.scale", 3, "data.scale"),
    ("data.degradation", "blur", "data.degradation"),
    ("data.split_fractions", [0.5, 0.5, 0.5], "data.split_fractions"),
    ("train.sr.gan_loss", "wgan", "train.sr.gan_loss"),
    ("train.lambda_cycle", -1.0, "train.lambda_cycle"),
    ("train.cyclegan.decay_start", 10_000, "train.cyclegan.decay_start"),
    ("segmenter.decoder_channels", [8, 8], "segmenter.decoder_channels"),
    ("data.sim.field_strength", 7.0, "data.sim.field_strength"),
])
def test_value_checks_name_their_key(path, value, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ":"):
        params_from_dict(with_change(path, value))


def test_sections_are_frozen():
    params = load_params("params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lambda_cycle = 1.0


def test_load_params_names_the_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump(with_change("evaluate.batch_size", "many")))
    with pytest.raises(ConfigError, match=r"p\.yaml: evaluate\.batch_size: expected int"):
        load_params(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "missing.yaml")
