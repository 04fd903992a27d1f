"""Sim-to-real ablation on the **val** split: which translator settings earn their keep.

Each experiment trains the real stage (`python -m src.train_cyclegan --input <source>`) with
params overrides, in a scratch folder that links to this checkout's code, prepared data, frozen
segmenter and weights, so the pipeline's own outputs are untouched. It then scores, on val:

- realism: SWD ×10³ between the translated val inputs and the real val slices;
- content: the judge's Dice on the translated val inputs against the sim labels (the judge is a
  U-Net trained on real train slices, as in `evaluate`);
- downstream: Dice on the real val slices of U-Nets (one recipe, `--seeds` seeds) trained on the
  translated train inputs with the sim labels.

Reference rows (sim_only, classical, randomized, real_oracle) are scored the same way once.
Test is never read: the defaults are chosen here and only confirmed by `evaluate` on test.

    python -m benchmarks.sim2real_ablation --seeds 2 \\
        --experiment 'classical_l1:source=classical' \\
        --experiment 'classical_huber:source=classical,train.cyclegan.reconstruction_beta=0.1'

Prints a table and writes benchmarks/sim2real_ablation.json (merging with earlier runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.augment.randomization import randomized_images  # noqa: E402
from src.config import load_params  # noqa: E402
from src.evaluation.models import load_translator  # noqa: E402
from src.metrics.distribution import sliced_wasserstein_distance  # noqa: E402
from src.metrics.segmentation import dice_per_class, mean_foreground_dice  # noqa: E402
from src.models.segmenter import build_unet  # noqa: E402
from src.training.inference import predict  # noqa: E402
from src.training.runtime import make_runtime, seed_everything  # noqa: E402
from src.training.segmentation import fit_segmenter, predict_labels  # noqa: E402

OUT = REPO / "benchmarks" / "sim2real_ablation.json"
GRADIENTS = REPO / "benchmarks" / "sim2real_gradients.json"
SCRATCH = Path(os.environ.get("ABLATION_SCRATCH", "/tmp/sim2real_ablation"))
LINKED = ("src", "data", "pipeline/train_segmenter", "pipeline/weights")


def load(split: str) -> dict[str, torch.Tensor]:
    folder = REPO / "data/prepared/sim2real" / split
    return {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in ("sim", "classical", "sim_labels", "real", "real_labels")}


def set_dotted(tree: dict, key: str, value: str) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = yaml.safe_load(value)


def train_translator(name: str, overrides: dict[str, str]) -> tuple[Path, float]:
    """Run the stage in SCRATCH/name with the overrides; returns g_sim2real.pt and the wall time."""
    folder = SCRATCH / name
    (folder / "pipeline").mkdir(parents=True, exist_ok=True)
    for link in LINKED:
        target = folder / link
        if not target.exists():
            target.symlink_to(REPO / link)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    source = overrides.get("source", "classical")
    for key, value in overrides.items():
        if key != "source":
            set_dotted(params, key, value)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "src.train_cyclegan", "--input", source], cwd=folder, check=True)
    return folder / "pipeline/train_cyclegan" / source / "g_sim2real.pt", time.perf_counter() - started


def downstream(images: torch.Tensor, labels: torch.Tensor, val: dict, params, seeds: list[int], runtime,
               render=None) -> list[float]:
    scores = []
    for seed in seeds:
        seed_everything(seed)
        model, _ = build_unet(params.segmenter.encoder, params.segmenter.encoder_depth,
                              params.segmenter.decoder_channels, 4, None)
        fit_segmenter(model, images, labels, params.segmenter, params.evaluate.downstream_steps, seed, runtime,
                      desc=f"downstream seed {seed}", render=render)
        pred = predict_labels(model, val["real"], runtime)
        scores.append(mean_foreground_dice(dice_per_class(pred, val["real_labels"], 4)))
    return scores


def score(images_train, labels_train, images_val, val, judge, params, seeds, runtime, render=None) -> dict:
    swd = sliced_wasserstein_distance(images_val.clamp(-1, 1), val["real"], seed=params.seed)
    judge_dice = mean_foreground_dice(dice_per_class(predict_labels(judge, images_val.clamp(-1, 1), runtime),
                                                     val["sim_labels"], 4))
    down = downstream(images_train, labels_train, val, params, seeds, runtime, render)
    return {"swd_x1e3": swd["mean"],
            "judge_dice": judge_dice, "downstream_mean": float(np.mean(down)),
            "downstream_std": float(np.std(down, ddof=1)) if len(down) > 1 else float("nan"), "downstream": down}


def gradient_norms(params, source: str, beta: float, residual: bool, seed: int = 0) -> dict[str, float]:
    """Per-term gradient norm over g_sim2real's weights on one batch, at initialisation (weighted terms).

    Why a refiner stays at the identity: at its start the cycle and identity errors are tiny, but an
    L1 term's gradient has the same size for any non-zero error, while a Huber term's shrinks with it.
    """
    from src.losses.adversarial import G_LOSSES
    from src.models.cyclegan import ResnetGenerator
    from src.models.discriminators import PatchDiscriminator
    from src.training.batches import random_crops
    from src.training.cyclegan_step import reconstruction_loss

    cfg, t = params.train.cyclegan, params.train
    torch.manual_seed(seed)
    g_s2r, g_r2s = (ResnetGenerator(1, cfg.g_channels, cfg.g_blocks, residual) for _ in range(2))
    d_real = PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm)
    train = load("train")
    draws = torch.Generator().manual_seed(seed)
    sim, _ = random_crops(train[source], cfg.crop_size, cfg.batch_size, draws)
    real, _ = random_crops(train["real"], cfg.crop_size, cfg.batch_size, draws)
    fake_real = g_s2r(sim)
    terms = {"adv": t.lambda_adv * G_LOSSES[cfg.gan_loss](d_real(fake_real)),
             "cycle": t.lambda_cycle * reconstruction_loss(g_r2s(fake_real), sim, beta),
             "identity": t.lambda_identity * reconstruction_loss(g_s2r(real), real, beta)}
    out = {}
    weights = list(g_s2r.parameters())
    for name, loss in terms.items():
        grads = torch.autograd.grad(loss, weights, retain_graph=True, allow_unused=True)
        out[f"grad_{name}"] = float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None)))
    out["mean_abs_change_at_init"] = float((fake_real - sim).abs().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", action="append", default=[],
                        help="name:source=classical,dotted.key=value,... (repeatable)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--references", action="store_true", help="(re)score sim_only/classical/randomized/oracle")
    parser.add_argument("--gradients", action="store_true", help="only the per-term gradient norms at initialisation")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    if args.gradients:
        rows = {f"{source} residual={residual} beta={beta}": gradient_norms(params, source, beta, residual)
                for source in ("sim", "classical") for residual in (True, False) for beta in (0.0, 0.1)}
        for name, row in rows.items():
            print(f"{name:40s} " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))
        GRADIENTS.write_text(json.dumps(rows, indent=2))
        return
    runtime = make_runtime("cpu", params.train.amp)
    train, val = load("train"), load("val")
    seeds = [params.seed + k for k in range(args.seeds)]
    results = json.loads(OUT.read_text()) if OUT.exists() else {"split": "val", "rows": {}}
    results["seeds"] = seeds

    seed_everything(params.seed)
    judge, _ = build_unet(params.segmenter.encoder, params.segmenter.encoder_depth, params.segmenter.decoder_channels,
                          4, None)
    fit_segmenter(judge, train["real"], train["real_labels"], params.segmenter, params.evaluate.downstream_steps,
                  params.seed, runtime, desc="judge")
    if args.references:
        ranges = params.evaluate.randomization
        refs = {
            "sim_only": (train["sim"], train["sim_labels"], val["sim"], None),
            "classical": (train["classical"], train["sim_labels"], val["classical"], None),
            "randomized": (train["sim"], train["sim_labels"], val["sim"],
                           lambda lab, g: randomized_images(lab, 3, ranges, g)),
            "real_oracle": (train["real"], train["real_labels"], val["real"], None),
        }
        for name, (x, y, xv, render) in refs.items():
            results["rows"][name] = score(x, y, xv, val, judge, params, seeds, runtime, render)
            print(name, results["rows"][name], flush=True)
            OUT.write_text(json.dumps(results, indent=2))
    for spec in args.experiment:
        name, _, rest = spec.partition(":")
        overrides = dict(item.split("=", 1) for item in rest.split(",") if item)
        weights, wall = train_translator(name, overrides)
        g = runtime.place(load_translator(weights, expected=None))
        source = overrides.get("source", "classical")
        translated_train = predict(g, train[source], runtime).clamp(-1, 1)
        translated_val = predict(g, val[source], runtime).clamp(-1, 1)
        row = score(translated_train, train["sim_labels"], translated_val, val, judge, params, seeds, runtime)
        row.update(overrides=overrides, train_wall_s=round(wall, 1), load=os.getloadavg()[0],
                   mean_abs_change=float((translated_val - val[source]).abs()[val["sim_labels"][:, None] != 0].mean()))
        results["rows"][name] = row
        print(name, row, flush=True)
        OUT.write_text(json.dumps(results, indent=2))
    print(f"\n{'row':28s} {'SWD':>7s} {'judge':>6s} {'down mean':>9s} {'std':>6s} {'|change|':>8s}")
    for name, row in results["rows"].items():
        print(f"{name:28s} {row['swd_x1e3']:7.2f} {row['judge_dice']:6.3f} {row['downstream_mean']:9.3f} "
              f"{row['downstream_std']:6.3f} {row.get('mean_abs_change', float('nan')):8.3f}")


if __name__ == "__main__":
    main()
