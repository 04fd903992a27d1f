"""Names and meanings of the metrics and rows, for everything that shows them (plots data, the report)."""

from __future__ import annotations

from src.evaluation.schema import higher_is_better

# metric key -> (label, meaning). Feature-space keys (fid, kid, fd_<space>, kid_<space>) and class names: see label().
METRICS = {
    "psnr_db": ("PSNR (dB)", "peak signal-to-noise ratio against the reference slice (SR: the HR slice; sim-to-real: "
                "the real slice of the same anatomy, foreground only); pixel fidelity, rewards blurry averages"),
    "ssim": ("SSIM", "structural similarity with the reference slice (at most 1)"),
    "data_consistency_psnr_db": ("data-consistency PSNR (dB)", "PSNR between the output degraded again to LR and "
                                 "the LR input: does the output still explain what was measured?"),
    "mae": ("MAE", "mean absolute error against the real slice of the same anatomy, on the foreground, in model "
            "units ([-1, 1]: 2 = the whole range)"),
    "swd": ("SWD", "multi-scale sliced Wasserstein distance between patch descriptors of these images and the "
            "reference ones (Karras et al. 2018, ×10³); realism of the image distribution, no pretrained network"),
    "mean_foreground": ("mean (foreground)", "mean Dice over the foreground classes"),
    "judge_dice_mean_foreground": ("judge Dice (mean foreground)", "the judge segmenter's mean foreground Dice"),
    "gap_closed_fraction": ("gap closed", "(row − raw sim) / (oracle − raw sim) on mean foreground Dice: 1 = as "
                            "good as training on real labels, 0 = no better than raw simulation"),
    "tta_spearman_psnr_model": ("PSNR model: TTA uncertainty vs |error|", ""),
    "tta_spearman_gan_model": ("GAN model: TTA uncertainty vs |error|", ""),
    "hallucination_spearman": ("GAN model: |GAN − PSNR model| vs |error|", ""),
    # SR calibration (sr.calibration.<model>): the bound |error| <= k·σ_TTA, fitted on val
    "k_scale": ("k", "the scale fitted on the val split: |error| ≤ k·σ holds for at least 90 % of its foreground "
                "pixels (split-conformal quantile); interval: k refitted on resampled val slices"),
    "coverage_val": ("coverage, val", "fraction of val foreground pixels within the bound: ≥ 0.90 by construction"),
    "coverage_test": ("coverage, test (target 0.90)", "fraction of test foreground pixels within the bound, pooled "
                      "over slices: the check on slices the fit never saw"),
    "spearman_foreground": ("Spearman ρ, foreground", "rank correlation of σ with |error| on the foreground pixels "
                            "of each test slice, averaged; the background (where both are near 0) left out"),
    "error_detection_auroc": ("error detection AUROC", "ROC AUC of the bound k·σ for flagging the 10 % largest-error "
                              "foreground pixels of each test slice, averaged: 0.5 = the bound knows nothing"),
    "mean_bound": ("mean bound k·σ", "mean predicted 90 % error bound on the test foreground, model units"),
    "mean_abs_error": ("mean |error|", "mean absolute error on the test foreground, model units"),
}
ROWS = {  # section path -> {row key: label}
    "sr": {"naive": "naive upsampling (baseline)", "psnr_model": "PSNR model (L1 only)",
           "gan_model": "GAN model (SRGAN)"},
    "sim2real.realism": {"raw_sim": "raw simulation (baseline)",
                         "classical": "classical: blur + histogram matching (baseline)",
                         "translated_sim": "CycleGAN on raw sim",
                         "translated_classical": "CycleGAN on the classical rendering"},
    "sim2real.fidelity": {"raw_sim": "raw simulation (baseline)",
                          "classical": "classical: blur + histogram matching (baseline)",
                          "translated_sim": "CycleGAN on raw sim",
                          "translated_classical": "CycleGAN on the classical rendering"},
    "sim2real.content": {"judge_on_raw_sim": "judge on raw sim",
                         "judge_on_classical": "judge on classical",
                         "judge_on_translated_sim": "judge on CycleGAN(raw sim)",
                         "judge_on_translated_classical": "judge on CycleGAN(classical)",
                         "judge_on_real": "judge on real slices (the bar: as segmentable as real)"},
    "sim2real.downstream": {"sim_only": "trained on raw sim (baseline)",
                            "classical": "trained on classical (blur + histogram matching)",
                            "randomized": "trained on SynthSeg-style randomisation",
                            "translated_sim": "trained on CycleGAN(raw sim)",
                            "translated_classical": "trained on CycleGAN(classical)",
                            "real_oracle": "trained on real labels (oracle)"},
}
# comparison path -> (A, B) as read in "A − B"
COMPARISONS = {
    "sr.psnr_model_vs_naive": ("PSNR model", "naive upsampling"),
    "sr.gan_vs_psnr_model": ("GAN model", "PSNR model"),
    "sim2real.translated_vs_raw_sim": ("CycleGAN(raw sim)", "raw sim"),
    "sim2real.translated_classical_vs_classical": ("CycleGAN(classical)", "classical"),
    **{f"sim2real.fidelity_vs_raw_sim.{row}": (name, "raw sim") for row, name in (
        ("classical", "classical"), ("translated_sim", "CycleGAN(raw sim)"),
        ("translated_classical", "CycleGAN(classical)"))},
    **{f"sim2real.fidelity_vs_classical.{row}": (name, "classical") for row, name in (
        ("translated_sim", "CycleGAN(raw sim)"), ("translated_classical", "CycleGAN(classical)"))},
    **{f"sim2real.downstream_vs_sim_only.{row}": (f"trained on {name}", "trained on raw sim") for row, name in (
        ("classical", "classical"), ("randomized", "randomisation"), ("translated_sim", "CycleGAN(raw sim)"),
        ("translated_classical", "CycleGAN(classical)"), ("real_oracle", "real labels"))},
    **{f"sim2real.downstream_vs_randomized.{row}": (f"trained on {name}", "trained on randomisation")
       for row, name in (("translated_sim", "CycleGAN(raw sim)"), ("translated_classical", "CycleGAN(classical)"))},
    **{f"sim2real.downstream_vs_classical.{row}": (f"trained on {name}", "trained on classical") for row, name in (
        ("randomized", "randomisation"), ("translated_sim", "CycleGAN(raw sim)"),
        ("translated_classical", "CycleGAN(classical)"))},
}


def label(key: str) -> str:
    """Display name of a metric key; only `fid` is ever called FID, an `fd_<space>` is an FD in <space> features."""
    if key in METRICS:
        return METRICS[key][0]
    if key in ("fid", "kid"):
        return key.upper()
    for prefix, name in (("fd_", "FD"), ("kid_", "KID")):
        if key.startswith(prefix):
            return f"{name} ({key.removeprefix(prefix)} features)"
    return key  # a class name (Dice)


def meaning(key: str) -> str:
    if key in METRICS:
        return METRICS[key][1]
    if key == "fid":
        return ("Fréchet Inception Distance (Heusel et al. 2017): Fréchet distance between Gaussians fitted to "
                "Inception-v3 pool features of these images and of the reference ones")
    if key == "kid":
        return ("Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic kernel on "
                "Inception-v3 features; can be slightly negative")
    if key.startswith("fd_"):
        return (f"Fréchet distance between Gaussians fitted to {key[3:]} features of these images and of the "
                f"reference ones; not comparable with published Inception-based scores")
    if key.startswith("kid_"):
        return f"kernel distance: unbiased MMD² with a cubic kernel on {key[4:]} features; can be slightly negative"
    return ""


def arrow(key: str) -> str:
    return "↑" if higher_is_better(key) else "↓"


def verdict_text(better, a: str, b: str) -> str:
    """The decision rule in words: an interval of A − B containing 0 is not a win for either."""
    if better is True:
        return f"{a} better"
    if better is False:
        return f"{b} better"
    return "not distinguishable"
