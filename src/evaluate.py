"""DVC stage `evaluate`: every number on the held-out test split, named for what it is.

Super-resolution: PSNR/SSIM (data range 2.0 in model units, border crop = scale),
data consistency, SWD/KID/FD against the HR test set, TTA uncertainty and GAN-vs-PSNR
hallucination maps with their Spearman correlation to the error. Sim-to-real: realism
(SWD/KID/FD to real test slices), content preservation (a judge segmenter trained on real
slices only, never in a loss, segments translated sim: the FCN-score), and downstream
value (CyCADA protocol: three fresh segmenters with one recipe and budget).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from src.atomic import staged_dir
from src.config import ConfigError, Params, as_dict, load_params
from src.data.degrade import degrade
from src.data.prepared import PREPARED, load_meta, load_split
from src.metrics.distribution import frechet_distance, kernel_distance, sliced_wasserstein_distance
from src.metrics.features import EncoderFeatures, InceptionFeatures, extract_features
from src.metrics.image_quality import psnr, ssim
from src.metrics.uncertainty import dihedral_tta, spearman_correlation
from src.models.cyclegan import ResnetGenerator
from src.models.segmenter import build_unet
from src.models.srresnet import SRResNet
from src.pretrained import weight_file
from src.training.checkpoint import load_weights
from src.training.inference import predict
from src.training.runtime import Runtime, make_runtime, seed_everything
from src.training.samples import grid, overlay_labels
from src.training.segmentation import dice_report, fit_segmenter, predict_labels

OUT = Path("pipeline/evaluate")
WEIGHTS_DIR = Path("pipeline/weights")
SR_DATA = PREPARED / "sr"
SIM2REAL = PREPARED / "sim2real"
G_PSNR = Path("pipeline/train_sr/g_psnr.pt")
G_GAN = Path("pipeline/train_sr/g_gan.pt")
G_SIM2REAL = Path("pipeline/train_cyclegan/g_sim2real.pt")
DATA_RANGE = 2.0
log = logging.getLogger("evaluate")


# ---------------------------------------------------------------- loading
def load_sr_generator(path: Path, scale: int, degradation: str) -> torch.nn.Module:
    blob = load_weights(path)
    meta = blob["meta"]
    try:
        if meta["scale"] != scale or meta["degradation"] != degradation:
            raise ValueError(f"{path}: model was trained for x{meta['scale']} {meta['degradation']} but the test "
                             f"data is x{scale} {degradation}; re-run train_sr")
        g = SRResNet(scale, degradation, channels=meta["channels"], blocks=meta["blocks"])
        g.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run train_sr") from None
    return g.eval().requires_grad_(False)


def load_translator(path: Path) -> torch.nn.Module:
    blob = load_weights(path)
    try:
        g = ResnetGenerator(1, blob["meta"]["channels"], blob["meta"]["blocks"], blob["meta"]["residual"])
        g.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match their metadata ({type(err).__name__}: {err}); "
                         f"re-run train_cyclegan") from None
    return g.eval().requires_grad_(False)


# ---------------------------------------------------------------- metric groups
class DistributionMetrics:
    """SWD, KID and FD of an image set against a reference set, in one named feature space."""

    def __init__(self, extractor: torch.nn.Module, space: str, params: Params, runtime: Runtime):
        self.extractor, self.space, self.params, self.runtime = extractor, space, params, runtime
        ev = params.evaluate
        self.fd_key = "fid" if space == "inception_fid" else f"fd_{space}"
        self.kid_key = "kid" if space == "inception_fid" else f"kid_{space}"
        self.swd_args = dict(descriptors_per_image=ev.swd_descriptors_per_image, n_directions=ev.swd_directions,
                             seed=params.seed)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return extract_features(self.extractor, images.clamp(-1, 1), self.params.evaluate.batch_size, self.runtime.device)

    def compare(self, images: torch.Tensor, reference: torch.Tensor, reference_features: torch.Tensor) -> dict[str, float]:
        ev = self.params.evaluate
        feats = self.features(images)
        kid_mean, kid_std = kernel_distance(feats, reference_features, ev.kid_subsets, ev.kid_subset_size, self.params.seed)
        return {
            "swd": sliced_wasserstein_distance(images.clamp(-1, 1), reference, **self.swd_args)["mean"],
            self.kid_key: kid_mean,
            f"{self.kid_key}_std": kid_std,
            self.fd_key: frechet_distance(feats, reference_features),
        }


def error_colormap(maps: torch.Tensor, vmax: float) -> np.ndarray:
    """(N, 1, H, W) non-negative maps -> (N, H, W, 3) uint8 with a perceptual colour map."""
    cmap = matplotlib.colormaps["magma"]
    normed = (maps[:, 0].numpy() / max(vmax, 1e-8)).clip(0, 1)
    return (cmap(normed)[..., :3] * 255).round().astype(np.uint8)


def evaluate_sr(params: Params, runtime: Runtime, dist: DistributionMetrics, examples: Path) -> dict:
    ev = params.evaluate
    meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    test = load_split(SR_DATA / "test.npz", ("lr", "hr", "naive"))
    lr_img, hr_img = test["lr"], test["hr"]
    if lr_img.shape[-1] * scale != hr_img.shape[-1] or lr_img.shape[-2] * scale != hr_img.shape[-2]:
        raise ValueError(f"{SR_DATA / 'test.npz'}: LR {tuple(lr_img.shape[-2:])} x{scale} does not give HR "
                         f"{tuple(hr_img.shape[-2:])}")
    g_psnr = runtime.place(load_sr_generator(G_PSNR, scale, degradation))
    g_gan = runtime.place(load_sr_generator(G_GAN, scale, degradation))
    outputs = {
        "naive": test["naive"],
        "psnr_model": predict(g_psnr, lr_img, runtime, ev.batch_size),
        "gan_model": predict(g_gan, lr_img, runtime, ev.batch_size),
    }
    hr_features = dist.features(hr_img)
    results: dict = {}
    for name, sr_img in outputs.items():
        sr_img = sr_img.clamp(-1, 1)
        results[name] = {
            "psnr_db": psnr(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
            "ssim": ssim(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
            # GT-free: does the output, degraded again, reproduce the measured LR image?
            "data_consistency_psnr_db": psnr(degrade(sr_img, scale, degradation), lr_img, data_range=DATA_RANGE).mean().item(),
            **dist.compare(sr_img, hr_img, hr_features),
        }

    # Uncertainty (8-way dihedral TTA spread) and hallucination (|GAN - PSNR|) maps.
    def model_fn(model):
        return lambda x: predict(model, x, runtime, ev.batch_size)

    _, tta_std_psnr = dihedral_tta(model_fn(g_psnr), lr_img)
    _, tta_std_gan = dihedral_tta(model_fn(g_gan), lr_img)
    err_psnr = (outputs["psnr_model"].clamp(-1, 1) - hr_img).abs()
    err_gan = (outputs["gan_model"].clamp(-1, 1) - hr_img).abs()
    hallucination = (outputs["gan_model"] - outputs["psnr_model"]).abs()
    results["uncertainty"] = {
        "tta_spearman_psnr_model": spearman_correlation(tta_std_psnr, err_psnr, seed=params.seed),
        "tta_spearman_gan_model": spearman_correlation(tta_std_gan, err_gan, seed=params.seed),
        "hallucination_spearman": spearman_correlation(hallucination, err_gan, seed=params.seed),
    }

    n = ev.n_examples
    vmax = float(err_gan[:n].max())
    sr_grid = grid([lr_img[:n], test["naive"][:n], outputs["psnr_model"][:n], outputs["gan_model"][:n], hr_img[:n],
                    error_colormap(err_gan[:n], vmax), error_colormap(tta_std_gan[:n], float(tta_std_gan[:n].max())),
                    error_colormap(hallucination[:n], float(hallucination[:n].max()))],
                   ["LR", "naive", "PSNR model", "GAN", "HR", "|GAN-HR|", "TTA std", "|GAN-PSNR|"])
    Image.fromarray(sr_grid).save(examples / "sr_grid.png")
    return results


def evaluate_sim2real(params: Params, runtime: Runtime, examples: Path):
    """Content and downstream metrics.

    Returns (metrics, judge segmenter (= the real oracle), its encoder init, test split,
    translated test sims) so the realism metrics can reuse the judge as feature space.
    """
    ev, seg_cfg = params.evaluate, params.segmenter
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    train = load_split(SIM2REAL / "train.npz", ("sim", "sim_labels", "real", "real_labels"))
    test = load_split(SIM2REAL / "test.npz", ("sim", "sim_labels", "real", "real_labels"))
    g_sim2real = runtime.place(load_translator(G_SIM2REAL))
    if train["sim"].shape[-1] % 4 or test["sim"].shape[-1] % 4:
        raise ValueError(f"{SIM2REAL}: image size {test['sim'].shape[-1]} is not divisible by 4 (generator strides)")
    translated_train = predict(g_sim2real, train["sim"], runtime, ev.batch_size).clamp(-1, 1)
    translated_test = predict(g_sim2real, test["sim"], runtime, ev.batch_size).clamp(-1, 1)

    encoder_file = weight_file(WEIGHTS_DIR, "resnet18", use="The downstream/judge U-Net encoders") \
        if seg_cfg.encoder == "resnet18" else None

    def fresh_segmenter():
        model, init = build_unet(seg_cfg.encoder, seg_cfg.encoder_depth, seg_cfg.decoder_channels, len(class_names),
                                 str(encoder_file) if encoder_file else None)
        return runtime.place(model), init

    # Downstream value (CyCADA): one recipe, one budget, one seed, three training sets.
    training_sets = {
        "sim_only": (train["sim"], train["sim_labels"]),
        "translated_sim": (translated_train, train["sim_labels"]),
        "real_oracle": (train["real"], train["real_labels"]),
    }
    downstream, models, budgets = {}, {}, {}
    for name, (images, labels) in training_sets.items():
        seed_everything(params.seed)  # before building: all three start from the same weights
        model, encoder_init = fresh_segmenter()
        losses = fit_segmenter(model, images, labels, seg_cfg, ev.downstream_steps, params.seed, runtime,
                               desc=f"downstream {name}")
        budgets[name] = len(losses)
        models[name] = model
        scores = dice_report("d", predict_labels(model, test["real"], runtime), test["real_labels"], class_names)
        downstream[name] = {k.split("/")[-1]: v for k, v in scores.items()}
    gap = downstream["real_oracle"]["mean_foreground"] - downstream["sim_only"]["mean_foreground"]
    downstream["gap_closed_fraction"] = (
        (downstream["translated_sim"]["mean_foreground"] - downstream["sim_only"]["mean_foreground"]) / gap
        if abs(gap) > 1e-6 else float("nan"))
    downstream["steps_per_segmenter"] = budgets

    # Content preservation: the real-trained judge (never used in any loss) on translated sim.
    judge = models["real_oracle"]
    content = {}
    for name, images in (("judge_on_raw_sim", test["sim"]), ("judge_on_translated_sim", translated_test)):
        scores = dice_report("c", predict_labels(judge, images, runtime), test["sim_labels"], class_names)
        content[name] = {k.split("/")[-1]: v for k, v in scores.items()}

    n = ev.n_examples
    judge_pred = predict_labels(judge, translated_test[:n], runtime)
    sim_grid = grid([test["sim"][:n], translated_test[:n], test["real"][:n],
                     overlay_labels(translated_test[:n], judge_pred), overlay_labels(test["sim"][:n], test["sim_labels"][:n])],
                    ["sim", "translated", "real (same slice)", "judge on translated", "sim labels"])
    Image.fromarray(sim_grid).save(examples / "sim2real_grid.png")
    return {"content": content, "downstream": downstream}, judge, encoder_init, test, translated_test


def evaluate(params: Params) -> dict:
    started = time.perf_counter()
    seed_everything(params.seed)
    runtime = make_runtime(params.evaluate.device, amp=True)
    # Fail fast on a missing or mismatched model before minutes of segmenter training.
    sr_meta = load_meta(SR_DATA / "meta.json")
    for path in (G_PSNR, G_GAN):
        load_sr_generator(path, int(sr_meta["scale"]), sr_meta["degradation"])
    load_translator(G_SIM2REAL)
    # Example images replace the old ones only if the whole evaluation succeeds; metrics.json follows.
    with staged_dir(OUT / "examples") as staging:
        sim2real, judge, judge_init, test, translated = evaluate_sim2real(params, runtime, staging)
        inception_file = weight_file(WEIGHTS_DIR, "inception_fid", use="FID/KID")
        if inception_file is not None:
            extractor, space = InceptionFeatures(inception_file), "inception_fid"
            space_note = "inception_fid"
        else:
            # Not FID: the Fréchet/kernel distances are computed in the judge U-Net's encoder
            # space (trained on real test-disjoint slices) and named fd_/kid_judge_unet_encoder.
            extractor, space = EncoderFeatures(judge.encoder, "judge_unet_encoder"), "judge_unet_encoder"
            space_note = "judge_unet_encoder (fallback: FID Inception weights unavailable)"
        extractor = runtime.place(extractor)
        dist = DistributionMetrics(extractor, space, params, runtime)

        real_features = dist.features(test["real"])
        sim2real["realism"] = {
            "raw_sim": dist.compare(test["sim"], test["real"], real_features),
            "translated_sim": dist.compare(translated, test["real"], real_features),
        }
        sr = evaluate_sr(params, runtime, dist, staging)

        n_sr_test = int(load_split(SR_DATA / "test.npz", ("hr",))["hr"].shape[0])
        metrics = {
            "protocol": {
                "split": "test", "seed": params.seed, "n_sr_test": n_sr_test,
                "n_sim2real_test": int(test["real"].shape[0]), "crop_border": int(sr_meta["scale"]),
                "data_range": DATA_RANGE, "value_range": [-1.0, 1.0],
                "swd": {"descriptors_per_image": params.evaluate.swd_descriptors_per_image,
                        "directions": params.evaluate.swd_directions},
                "kid": {"subsets": params.evaluate.kid_subsets, "subset_size": params.evaluate.kid_subset_size,
                        # kernel_distance clamps the subset to the smaller set: with fewer test
                        # images than subset_size every subset is the whole set (std 0).
                        "effective_subset_size": min(params.evaluate.kid_subset_size, n_sr_test,
                                                     int(test["real"].shape[0]))},
                "downstream_steps": params.evaluate.downstream_steps, "segmenter_recipe": as_dict(params.segmenter),
            },
            "backbones": {
                "distribution_features": space_note,
                "judge_encoder": judge_init,
                "perceptual_loss_sr": load_weights(G_GAN)["meta"].get("vgg_backbone", "unknown"),
                "perceptual_loss_cyclegan": load_weights(G_SIM2REAL)["meta"].get("vgg_backbone", "unknown"),
            },
            "sr": sr,
            "sim2real": sim2real,
            "wall_time_s": round(time.perf_counter() - started, 1),
        }
    tmp = OUT / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    tmp.replace(OUT / "metrics.json")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.evaluate",
        description="Evaluate on the test split. Reads data/prepared/{sr,sim2real}/, pipeline/train_sr/{g_psnr,g_gan}.pt, "
        "pipeline/train_cyclegan/g_sim2real.pt, pipeline/weights/ and params.yaml (seed, segmenter, evaluate). "
        "Trains the three downstream segmenters (sim-only, translated sim, real oracle = judge). Writes "
        "pipeline/evaluate/metrics.json and pipeline/evaluate/examples/*.png.",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = evaluate(load_params(args.params))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    log.info("wrote %s (%.0f s)", OUT / "metrics.json", metrics["wall_time_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
