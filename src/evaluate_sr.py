"""DVC stage `evaluate_sr`: the super-resolution models on the held-out test split, with 95 % bootstrap intervals.

PSNR/SSIM, data consistency, SWD/KID/FD to HR (src/evaluation/sr.py), TTA-uncertainty and hallucination maps,
and each model's TTA spread calibrated into an error bound on the val split (src/evaluation/calibration.py).
Its own stage so that an SR experiment (`-S train.sr.*`) re-runs only the SR training stage(s), this stage and
the assembly.
The set distances use the FID Inception when its weights exist, else the judge U-Net's encoder (from
`baselines`), named for it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PIL import Image

from src.atomic import staged_dir, write_text
from src.config import Params
from src.data.prepared import PREPARED, check_scale, load_meta, load_split, split_digest
from src.evaluation import plots
from src.evaluation.distances import DistanceMetrics, feature_space
from src.evaluation.intervals import Resamples
from src.training.sr_models import load_sr_generator
from src.evaluation.parts import write_part
from src.evaluation.sr import DATA_RANGE, evaluate_sr
from src.pretrained import weight_file
from src.stage import run_stage
from src.training.artifacts import load_segmenter
from src.training.checkpoint import load_weights
from src.training.provenance import judge_provenance, sr_provenance
from src.training.runtime import make_runtime, seed_everything

OUT = Path("pipeline/evaluate_sr")
WEIGHTS_DIR = Path("pipeline/weights")
SR_DATA = PREPARED / "sr"
G_PSNR = Path("pipeline/train_sr_psnr/g_psnr.pt")
G_GAN = Path("pipeline/train_sr/g_gan.pt")
JUDGE = Path("pipeline/baselines/judge.pt")
DESCRIPTION = (
    "Score the SR models on the test split. Reads data/prepared/sr/{val,test}/, pipeline/train_sr_psnr/g_psnr.pt, "
    "pipeline/train_sr/g_gan.pt, "
    "pipeline/baselines/judge.pt (feature space without FID Inception weights), pipeline/weights/ and params.yaml "
    "(seed, evaluate). Writes pipeline/evaluate_sr/: part.json (the SR section), per_slice.json, reliability.json, "
    "examples/sr_grid.png, examples/sr_calibration.png.")


def score_sr(params: Params) -> dict:
    started = time.perf_counter()
    ev = params.evaluate
    seed_everything(params.seed)
    runtime = make_runtime(ev.device, amp=False, key="evaluate.device")  # metrics in fp32, whatever the hardware's bf16
    sr_meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(sr_meta["scale"]), sr_meta["degradation"]
    sr_test = load_split(SR_DATA / "test", ("lr", "hr", "naive"))
    sr_val = load_split(SR_DATA / "val", ("lr", "hr"))  # calibrates the uncertainty maps, never scored
    lr_img, hr_img = sr_test["lr"], sr_test["hr"]
    check_scale(SR_DATA / "meta.json", SR_DATA / "test", lr_img.shape, hr_img.shape, scale)
    # the train split and train.sr params each model must come from
    g_psnr, g_gan = (runtime.place(load_sr_generator(path, scale, degradation, phase,
                                                     expected=sr_provenance(params, phase)))
                     for path, phase in ((G_PSNR, "psnr"), (G_GAN, "gan")))
    judge, _ = load_segmenter(JUDGE, judge_provenance(params))
    extractor, space, space_note = feature_space(weight_file(WEIGHTS_DIR, "inception_fid", use="FID/KID"), judge)
    distances = DistanceMetrics(runtime.place(extractor), space, ev, params.seed, runtime)
    draws = Resamples.draw(len(hr_img), ev.bootstrap_resamples, ev.bootstrap_set_resamples, params.seed)
    sr = evaluate_sr(lr_img, hr_img, sr_test["naive"], g_psnr, g_gan, scale, degradation, runtime, distances,
                     draws, ev.n_examples, sr_val["lr"], sr_val["hr"])
    with staged_dir(OUT) as out:
        (out / "examples").mkdir()
        Image.fromarray(sr.grid).save(out / "examples" / "sr_grid.png")
        Image.fromarray(sr.calibration_grid).save(out / "examples" / "sr_calibration.png")
        write_text(out / "reliability.json", plots.to_json(sr.reliability))
        write_part(out, {"sr": sr.section.model_dump(), "n_test": len(hr_img), "scale": scale, "data_range": DATA_RANGE,
                         "feature_space": space, "distribution_features": space_note,
                         "perceptual_loss_sr": load_weights(G_GAN)["meta"].get("perceptual_backbone", "unknown"),
                         "test_digest": split_digest(SR_DATA / "test"),
                         "wall_time_s": round(time.perf_counter() - started, 1)}, sr.per_slice)
    return {"n_test": len(hr_img), "wall_time_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate_sr", DESCRIPTION, score_sr, argv)


if __name__ == "__main__":
    sys.exit(main())
