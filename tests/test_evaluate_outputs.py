"""What `evaluate` writes on a tiny tree: per_slice.csv behind every headline value, paired intervals, headline.json."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_evaluate_errors import make_tree, run_evaluation, write_params

from src.evaluation import schema
from src.metrics.bootstrap import percentile_interval, resample_indices, resampled_means

N_TEST = 6
OUT = Path("pipeline/evaluate")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One evaluate run (two downstream seeds) on the tiny tree with 6 test slices: (metrics, csv rows, params)."""
    root = tmp_path_factory.mktemp("evaluate")
    before, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        make_tree(root, n_test=N_TEST)
        path = write_params(root)
        raw = yaml.safe_load(path.read_text())
        raw["evaluate"].update(downstream_seeds=2, bootstrap_resamples=300, bootstrap_set_resamples=40)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert run_evaluation(path) == 0
        metrics = schema.from_json((root / OUT / "metrics.json").read_text(), "metrics.json")
        with (root / OUT / "per_slice.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        headline = json.loads((root / OUT / "headline.json").read_text())
        yield metrics, rows, headline, raw
    finally:
        os.chdir(before)
        torch.set_num_threads(threads)


def column(rows: list[dict], task: str, method: str, key: str, seed: str = "") -> np.ndarray:
    picked = [r for r in rows if r["task"] == task and r["method"] == method and r["seed"] == seed]
    assert [int(r["slice"]) for r in picked] == list(range(N_TEST)), f"{task}/{method}/{seed}: one row per slice"
    return np.array([float(r[key]) for r in picked])


def test_per_slice_file_has_one_row_per_slice_method_and_seed(run):
    metrics, rows, _, _ = run
    keys = [(r["task"], r["method"], r["seed"], r["slice"]) for r in rows]
    assert len(keys) == len(set(keys))
    groups = {(r["task"], r["method"], r["seed"]) for r in rows}
    seeds = [str(s) for s in metrics.protocol.downstream.seeds]
    assert groups == ({("sr", m, "") for m in schema.SR_METHODS} | {("content", m, "") for m in schema.CONTENT_SETS}
                      | {("fidelity", m, "") for m in schema.REALISM_SETS}
                      | {("downstream", m, s) for m in schema.DOWNSTREAM_ROWS for s in seeds})
    assert len(rows) == len(groups) * N_TEST
    assert list(rows[0]) == ["task", "method", "slice", "seed", "psnr_db", "ssim", "data_consistency_psnr_db",
                             "tta_spearman", "hallucination_spearman", "fidelity_psnr_db",
                             "fidelity_ssim", "fidelity_mae", "dice_csf", "dice_gm", "dice_wm",
                             "dice_mean_foreground", "dice_csf_num", "dice_csf_den", "dice_gm_num", "dice_gm_den",
                             "dice_wm_num", "dice_wm_den"]


def test_per_slice_means_reproduce_the_headline_values(run):
    metrics, rows, _, _ = run
    for method in schema.SR_METHODS:
        for key in schema.SR_QUALITY:
            assert np.mean(column(rows, "sr", method, key)) == pytest.approx(getattr(metrics.sr, method)[key].value,
                                                                              rel=1e-12)
    uncertainty = metrics.sr.uncertainty
    assert np.nanmean(column(rows, "sr", "gan_model", "tta_spearman")) == pytest.approx(
        uncertainty["tta_spearman_gan_model"].value, rel=1e-12)
    assert np.nanmean(column(rows, "sr", "gan_model", "hallucination_spearman")) == pytest.approx(
        uncertainty["hallucination_spearman"].value, rel=1e-12)
    # Dice is pooled over pixels: the sums of the per-slice counts give it (seed-averaged downstream).
    content = metrics.sim2real.content.judge_on_translated_sim
    pooled = column(rows, "content", "judge_on_translated_sim", "dice_gm_num").sum() / column(
        rows, "content", "judge_on_translated_sim", "dice_gm_den").sum()
    assert pooled == pytest.approx(content["gm"].value, rel=1e-12)
    seeds = [str(s) for s in metrics.protocol.downstream.seeds]
    per_seed = [column(rows, "downstream", "real_oracle", "dice_wm_num", s).sum()
                / column(rows, "downstream", "real_oracle", "dice_wm_den", s).sum() for s in seeds]
    oracle = metrics.sim2real.downstream.real_oracle["wm"]
    assert np.mean(per_seed) == pytest.approx(oracle.value, rel=1e-12)
    assert np.std(per_seed, ddof=1) == pytest.approx(oracle.std, rel=1e-9)


def test_intervals_are_paired_bootstraps_on_the_same_slice_indices(run):
    # Recomputed from per_slice.csv with the protocol's seed and resample count: the GAN - PSNR model
    # interval of PSNR is the percentile interval of per-resample mean differences on the SAME indices.
    metrics, rows, _, raw = run
    indices = resample_indices(N_TEST, raw["evaluate"]["bootstrap_resamples"], metrics.protocol.bootstrap.seed)
    gan, psnr_model = (column(rows, "sr", m, "psnr_db") for m in ("gan_model", "psnr_model"))
    difference = metrics.sr.gan_vs_psnr_model["psnr_db"]
    assert (difference.ci95_low, difference.ci95_high) == pytest.approx(
        percentile_interval(resampled_means(gan - psnr_model, indices)), rel=1e-9)
    estimate = metrics.sr.gan_model["psnr_db"]
    assert (estimate.ci95_low, estimate.ci95_high) == pytest.approx(
        percentile_interval(resampled_means(gan, indices)), rel=1e-9)
    assert difference.n == estimate.n == N_TEST


def test_every_estimate_has_an_ordered_interval_and_distances_carry_n(run):
    metrics, _, _, _ = run
    for path in schema.expected_keys(metrics.protocol):
        for key, item in schema.section(metrics, path).items():
            if np.isfinite(item.value) and np.isfinite(item.ci95_low):
                assert item.ci95_low <= item.ci95_high, f"{path}.{key}"
    kid, fd = schema.distance_keys(metrics.protocol.feature_space)
    for row in (metrics.sr.gan_model, metrics.sim2real.realism.translated_sim):
        assert row["swd"].n == row[kid].n == row[fd].n == N_TEST


def test_headline_repeats_metrics_values(run):
    metrics, _, headline, _ = run
    assert headline["sr"]["gan"]["psnr_db"] == metrics.sr.gan_model["psnr_db"].value
    assert headline["sr"]["gan"]["psnr_db_ci95_high"] == metrics.sr.gan_model["psnr_db"].ci95_high
    vs = metrics.sim2real.downstream_vs_classical.translated_classical["mean_foreground"]
    s2r = headline["s2r"]
    assert s2r["vs_classical"]["translated_classical_better"] == vs.better
    gap = metrics.sim2real.downstream.translated_classical["gap_closed_fraction"]
    np.testing.assert_equal(s2r["gap_closed"]["translated_classical_ci95_low"], gap.ci95_low)  # NaN without a gap


def test_uncertainty_is_calibrated_on_val_and_checked_on_test(run):
    metrics, _, headline, _ = run
    calibration = metrics.sr.calibration
    assert calibration.calibration_split == "val" and calibration.n_val == N_TEST
    for model in schema.CALIBRATED_MODELS:
        row = getattr(calibration, model)
        assert row["coverage_val"].value >= calibration.target_coverage  # by construction
        assert row["k_scale"].ci95_low <= row["k_scale"].value <= row["k_scale"].ci95_high
        assert row["k_scale"].n == N_TEST and row["coverage_test"].n == N_TEST
    assert headline["sr"]["coverage90"]["psnr_model"] == calibration.psnr_model["coverage_test"].value
    points = json.loads((OUT / "plots/reliability.json").read_text())
    assert {p["method"] for p in points} == {"PSNR model (L1 only)", "GAN model (SRGAN)"}
    assert (OUT / "examples/sr_calibration.png").is_file()


def test_paired_fidelity_of_the_raw_sims_recomputed_with_numpy(run):
    # The tiny tree's test sims are rendered from their real slices' labels (aligned): foreground PSNR and MAE
    # of raw sim against real, recomputed from the prepared arrays, per slice and as the headline mean.
    metrics, rows, headline, _ = run
    sim = np.load("data/prepared/sim2real/test/sim.npy").astype(np.float64)[:, 0]
    real = np.load("data/prepared/sim2real/test/real.npy").astype(np.float64)[:, 0]
    foreground = np.load("data/prepared/sim2real/test/sim_labels.npy") != 0
    mse = np.array([((s - r)[m] ** 2).mean() for s, r, m in zip(sim, real, foreground)])
    mae = np.array([np.abs(s - r)[m].mean() for s, r, m in zip(sim, real, foreground)])
    np.testing.assert_allclose(column(rows, "fidelity", "raw_sim", "fidelity_psnr_db"), 10 * np.log10(4.0 / mse),
                               rtol=1e-9)
    np.testing.assert_allclose(column(rows, "fidelity", "raw_sim", "fidelity_mae"), mae, rtol=1e-9)
    fidelity = metrics.sim2real.fidelity
    assert fidelity.raw_sim["psnr_db"].value == pytest.approx(np.mean(10 * np.log10(4.0 / mse)), rel=1e-9)
    assert fidelity.raw_sim["mae"].value == pytest.approx(mae.mean(), rel=1e-9)
    # Paired verdicts: classical - raw sim on the same slices, MAE judged lower-is-better.
    vs = metrics.sim2real.fidelity_vs_raw_sim.classical
    classical = column(rows, "fidelity", "classical", "fidelity_mae")
    assert vs["mae"].value == pytest.approx(np.mean(classical - mae), rel=1e-9)
    expected = ("indistinguishable" if vs["mae"].ci95_low <= 0 <= vs["mae"].ci95_high
                else bool(vs["mae"].ci95_high < 0))
    assert vs["mae"].better == expected
    assert headline["s2r"]["fidelity_psnr"]["raw_sim"] == fidelity.raw_sim["psnr_db"].value
