"""The metrics.json schema: flat on disk, typed in memory, and loud about anything missing or unknown."""

import copy
import json

import pytest

from src.evaluation import schema


def estimate(value: float, n: int = 14, std=None) -> dict:
    return {"value": value, "ci95_low": value - 1, "ci95_high": value + 1, "n": n, "std": std}


def difference(value: float, better) -> dict:
    return {"value": value, "ci95_low": value - 1, "ci95_high": value + 1, "n": 14, "better": better}


CALIBRATION_PROTOCOL = {"target_coverage": 0.9, "calibration_split": "val", "n_val": 14, "foreground": "HR > -1",
                        "sigma": "TTA std", "sigma_floor": 1.0e-4}


def example(feature_space: str = "judge_unet_encoder") -> schema.Metrics:
    """A complete, valid Metrics built from `expected_keys`, so it follows any schema change."""
    protocol = {
        "split": "test", "seed": 42, "n_sr_test": 14, "n_sim2real_test": 14, "crop_border": 4, "data_range": 2.0,
        "value_range": (-1.0, 1.0), "class_names": ["background", "csf", "gm", "wm"], "feature_space": feature_space,
        "swd": {"descriptors_per_image": 128, "directions": 512},
        "kid": {"subsets": 100, "subset_size": 32, "effective_subset_size": 14, "subset_is_whole_set": True},
        "bootstrap": {"method": "percentile", "level": 0.95, "resamples": 1000, "set_resamples": 200, "seed": 42,
                      "pairing": "p", "set_level": "s", "dice": "d", "downstream": "ds", "decision": "dec"},
        "downstream": {"steps": 250, "seeds": [42, 43, 44], "steps_per_segmenter": {"sim_only": 250},
                       "segmenter_recipe": {"encoder": "resnet18"}},
        "uncertainty": "u",
    }
    tree = {"protocol": protocol, "wall_time_s": 1.0,
            "backbones": {"distribution_features": feature_space, "judge_encoder": "resnet18_random_init",
                          "perceptual_loss_sr": "vgg19_random_init", "perceptual_loss_cyclegan": "vgg19_random_init"}}
    for path, keys in schema.expected_keys(schema.Protocol(**protocol)).items():
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})
        compare = "_vs_" in path
        node |= {k: difference(-0.5, "indistinguishable") if compare else estimate(float(i)) for i, k in enumerate(keys)}
    tree["sr"]["calibration"] |= CALIBRATION_PROTOCOL
    return schema.Metrics.model_validate(tree)


def test_round_trip_is_flat_on_disk_and_identical_in_memory():
    metrics = example()
    text = schema.to_json(metrics)
    flat = json.loads(text)
    gan = flat["sr"]["gan_model"]
    assert {"psnr_db", "psnr_db_ci95_low", "psnr_db_ci95_high", "psnr_db_n"} <= set(gan)
    assert all(not isinstance(v, dict) for v in gan.values())
    assert "psnr_db_std" not in gan  # no seeds, no std
    assert flat["sr"]["gan_vs_psnr_model"]["swd_better"] == "indistinguishable"
    assert schema.from_json(text, "m.json") == metrics


def test_fid_keys_only_in_the_inception_space():
    assert schema.distance_keys("inception_fid") == ("kid", "fid")
    assert schema.distance_keys("judge_unet_encoder") == ("kid_judge_unet_encoder", "fd_judge_unet_encoder")
    flat = json.loads(schema.to_json(example("inception_fid")))
    assert {"fid", "kid", "fid_ci95_low"} <= set(flat["sr"]["naive"])


@pytest.mark.parametrize("spoil, message", [
    (lambda t: t["sr"]["gan_model"].pop("psnr_db_ci95_low"), "sr.gan_model.psnr_db_ci95_low: missing"),
    (lambda t: t["sim2real"]["downstream"].pop("translated_sim"), "sim2real.downstream.translated_sim: missing"),
    (lambda t: t["sr"]["naive"].update(lpips=1.0, lpips_ci95_low=0.0, lpips_ci95_high=2.0, lpips_n=14),
     "sr.naive.lpips: unexpected key"),
    (lambda t: t["sr"]["naive"].update(kid_judge_unet_encoder_std=0.0), "sr.naive.kid_judge_unet_encoder_std"),
    (lambda t: t["sim2real"]["content"]["judge_on_raw_sim"].pop("wm"), "sim2real.content.judge_on_raw_sim.wm: missing"),
    (lambda t: t.pop("protocol"), "protocol: missing"),
])
def test_a_missing_or_unknown_key_is_an_error_naming_the_file_and_the_flat_key(spoil, message):
    tree = json.loads(schema.to_json(example()))
    spoil(tree)
    with pytest.raises(ValueError, match="pipeline/evaluate/metrics.json") as info:
        schema.from_json(json.dumps(tree), "pipeline/evaluate/metrics.json")
    assert message in str(info.value)


def test_the_std_over_seeds_is_kept_and_a_bare_kid_std_is_not_accepted():
    tree = json.loads(schema.to_json(example()))
    tree["sim2real"]["downstream"]["sim_only"]["mean_foreground_std"] = 0.02
    assert schema.from_json(json.dumps(tree), "m").sim2real.downstream.sim_only["mean_foreground"].std == 0.02
    old = copy.deepcopy(tree)
    del old["sr"]["naive"]["swd_ci95_low"], old["sr"]["naive"]["swd_ci95_high"], old["sr"]["naive"]["swd_n"]
    with pytest.raises(ValueError, match="sr.naive.swd"):
        schema.from_json(json.dumps(old), "m")


def test_headline_holds_only_the_chosen_numbers_with_their_intervals():
    metrics = example()
    headline = json.loads(schema.headline(metrics))
    gan = headline["sr"]["gan"]
    assert set(gan) == {f"{k}{s}" for k in ("psnr_db", "ssim", "swd") for s in ("", "_ci95_low", "_ci95_high")}
    assert gan["ssim"] == metrics.sr.gan_model["ssim"].value
    assert headline["sr"]["gan_vs_psnr_model"]["psnr_db_better"] == "indistinguishable"
    assert set(headline["sr"]["naive"]) == {f"{k}{s}" for k in ("psnr_db", "swd") for s in ("", "_ci95_low", "_ci95_high")}
    assert "protocol" not in headline
    for key, path in schema.HEADLINE.items():  # every headline key points at a metric of the schema
        row, metric = path.rsplit(".", 1)
        assert metric in schema.expected_keys(metrics.protocol)[row], key
    assert max(len(f"{key}_ci95_high") for key in schema.HEADLINE) <= 55, "dvc exp show columns stay readable"
