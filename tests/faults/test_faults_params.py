"""Fault injection into params.yaml: a bad value stops a stage at load time with its dotted key, exit 1,
and the previous run's checkpoint, logs and models byte-identical (nothing is deleted before params load)."""

from __future__ import annotations


import pytest
from faults_helpers import edit_params, last_line, leftovers, snapshot

from src import train_sr

pytestmark = pytest.mark.faults

OUTPUTS = ("pipeline/train_sr",)


def _set(key: str, value):
    def edit(raw):
        *path, last = key.split(".")
        section = raw
        for part in path:
            section = section[part]
        section[last] = value
    return edit


def _delete(key: str):
    def edit(raw):
        *path, last = key.split(".")
        section = raw
        for part in path:
            section = section[part]
        del section[last]
    return edit


def _both(*edits):
    def edit(raw):
        for one in edits:
            one(raw)
    return edit


CASES = {
    # case id: (edit, text the error must contain)
    "diffaugment_policy_typo": (_set("train.sr.diffaugment", "colour,translation"), "train.sr.diffaugment"),
    "diffaugment_empty_op": (_set("train.cyclegan.diffaugment", "color,,cutout"), "train.cyclegan.diffaugment"),
    "infinite_loss_weight": (_set("train.lambda_cycle", float("inf")), "train.lambda_cycle: must be finite"),
    "nan_learning_rate": (_set("train.sr.lr_gan", float("nan")), "train.sr.lr_gan: must be finite"),
    "infinite_in_a_list": (_set("data.percentiles", [0.5, float("inf")]), "data.percentiles[1]: must be finite"),
    "unknown_gan_loss": (_set("train.sr.gan_loss", "wgan"), "train.sr.gan_loss"),
    "unknown_vgg_layer": (_set("train.sr.vgg_layers", ["relu9_9"]), "train.sr.vgg_layers[0]"),
    "unknown_perceptual_network": (_set("train.sr.perceptual_network", "resnet50"), "train.sr.perceptual_network"),
    "unknown_encoder_backbone": (_set("segmenter.encoder", "vgg16"), "segmenter.encoder"),
    "unknown_device": (_set("train.device", "tpu"), "train.device"),
    "amp_not_a_choice": (_set("train.amp", "yes"), "train.amp"),
    "misspelt_key": (_set("train.lamda_cycle", 10.0), "train.lamda_cycle: unknown key"),
    "missing_key": (_delete("train.sr.ema_decay"), "train.sr.ema_decay: missing key"),
    "float_written_as_string": (_set("train.sr.lr_gan", "1e-4"), "train.sr.lr_gan: expected float"),
    "bool_as_a_number": (_set("train.sr.log_every", True), "train.sr.log_every: expected int"),
    "negative_step_count": (_set("train.sr.psnr_steps", -5), "train.sr.psnr_steps: must be >= 1"),
    # Degenerate statistics: one resample gives zero-width intervals that would still hand out verdicts.
    "one_bootstrap_resample": (_set("evaluate.bootstrap_resamples", 1), "evaluate.bootstrap_resamples: must be >= 40"),
    "too_few_set_resamples": (_set("evaluate.bootstrap_set_resamples", 10),
                              "evaluate.bootstrap_set_resamples: must be >= 40"),
    # Across keys: a crop data.scale does not divide would train on a smaller crop than config.json says.
    "sr_crop_not_a_multiple_of_scale": (_both(_set("data.scale", 8), _set("train.sr.crop_size", 36)),
                                        "train.sr.crop_size: must be a multiple of data.scale = 8"),
    # A repeated axis would put every slice into its split twice (doubled test n, narrowed intervals).
    "repeated_slicing_axis": (_set("data.axes", [2, 2]), "data.axes: must not repeat an axis"),
    "seed_beyond_64_bits": (_set("seed", 2 ** 70), "seed: must be <"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_param_fails_at_load_naming_the_key(sr_run, capsys, case):
    edit, expected = CASES[case]
    edit_params(sr_run, edit)
    before = snapshot(sr_run, *OUTPUTS)
    rc = train_sr.main(["--params", "params.yaml"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1
    assert err.startswith("error: train_sr: params.yaml: ") and expected in err, err
    assert snapshot(sr_run, *OUTPUTS) == before
    assert leftovers(sr_run) == []


def test_params_file_that_is_not_yaml(sr_run, capsys):
    (sr_run / "params.yaml").write_text("train: [unclosed\n")
    before = snapshot(sr_run, *OUTPUTS)
    assert train_sr.main(["--params", "params.yaml"]) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: train_sr: params.yaml: not valid YAML"), err
    assert snapshot(sr_run, *OUTPUTS) == before


def test_a_key_written_twice_is_refused_naming_both_lines(sr_run, capsys):
    # PyYAML keeps the last of two equal keys silently (DVC's own parser refuses the file): the value a user
    # meant could be the one dropped.
    path = sr_run / "params.yaml"
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("seed:"))
    lines.insert(first + 1, "seed: 7")
    path.write_text("\n".join(lines) + "\n")
    before = snapshot(sr_run, *OUTPUTS)
    assert train_sr.main(["--params", "params.yaml"]) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: train_sr: params.yaml: not valid YAML: key 'seed' is written twice"), err
    assert f"lines {first + 1} and {first + 2}" in err, err
    assert snapshot(sr_run, *OUTPUTS) == before
    assert leftovers(sr_run) == []
