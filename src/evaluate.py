"""DVC stage `evaluate`: every number on the held-out test split, with a 95 % bootstrap interval.

Super-resolution (src/evaluation/sr.py): PSNR/SSIM, data consistency, SWD/KID/FD to HR,
TTA-uncertainty and hallucination maps, the TTA spread calibrated into an error bound on the val
split (src/evaluation/calibration.py). Sim-to-real (src/evaluation/sim2real.py): realism
(SWD/KID/FD to real slices) and content preservation (the FCN-score of a judge U-Net trained
on real slices only). Downstream value (src/evaluation/downstream.py): CyCADA's protocol,
`evaluate.downstream_seeds` fresh U-Nets per training set with one recipe and budget.
Writes metrics.json (schema: src/evaluation/schema.py), headline.json (for `dvc exp show`),
per_slice.csv, plots/ (interval charts, SR reliability) and examples/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PIL import Image

from src.atomic import staged_dir, write_text
from src.augment.randomization import randomized_images
from src.config import Params
from src.data.prepared import PREPARED, load_meta, load_split
from src.evaluation import per_slice, plots, schema
from src.evaluation.distances import DistanceMetrics
from src.evaluation.downstream import TrainingSet, score_downstream, train_downstream
from src.evaluation.examples import sim2real_grid
from src.evaluation.intervals import Resamples
from src.evaluation.models import load_sr_generator, load_translator
from src.evaluation.protocol import build_protocol
from src.evaluation.sim2real import evaluate_translation
from src.evaluation.sr import DATA_RANGE, evaluate_sr
from src.metrics.features import EncoderFeatures, InceptionFeatures
from src.models.segmenter import build_unet
from src.pretrained import weight_file
from src.stage import run_stage
from src.training.checkpoint import load_weights
from src.training.inference import predict
from src.training.runtime import make_runtime, seed_everything

OUT = Path("pipeline/evaluate")
WEIGHTS_DIR = Path("pipeline/weights")
SR_DATA = PREPARED / "sr"
SIM2REAL = PREPARED / "sim2real"
G_PSNR = Path("pipeline/train_sr/g_psnr.pt")
G_GAN = Path("pipeline/train_sr/g_gan.pt")
TRANSLATORS = {source: Path(f"pipeline/train_cyclegan/{source}/g_sim2real.pt") for source in ("sim", "classical")}
DESCRIPTION = (
    "Evaluate on the test split. Reads data/prepared/{sr,sim2real}/, pipeline/train_sr/{g_psnr,g_gan}.pt, "
    "pipeline/train_cyclegan/{sim,classical}/g_sim2real.pt, pipeline/weights/ and params.yaml (seed, train.amp, "
    "segmenter, evaluate). Trains evaluate.downstream_seeds U-Nets per downstream row (sim only, classical, "
    "randomized, translated sim, translated classical, real oracle; the first oracle is the judge). Writes pipeline/evaluate/: metrics.json, headline.json, per_slice.csv, plots/*.json, examples/.")


def evaluate(params: Params) -> dict:
    started = time.perf_counter()
    ev, recipe = params.evaluate, params.segmenter
    seed_everything(params.seed)
    # Metrics in fp32: they must not depend on whether the hardware has native bf16. The downstream
    # U-Nets are trained like every other network, under train.amp.
    runtime, train_runtime = make_runtime(ev.device, amp=False), make_runtime(ev.device, params.train.amp)
    # Fail fast on a missing or mismatched model before minutes of segmenter training.
    sr_meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(sr_meta["scale"]), sr_meta["degradation"]
    g_psnr, g_gan = (runtime.place(load_sr_generator(p, scale, degradation)) for p in (G_PSNR, G_GAN))
    translators = {source: runtime.place(load_translator(path)) for source, path in TRANSLATORS.items()}
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    sr_test = load_split(SR_DATA / "test", ("lr", "hr", "naive"))
    sr_val = load_split(SR_DATA / "val", ("lr", "hr"))  # calibrates the uncertainty maps, never scored
    train = load_split(SIM2REAL / "train", ("sim", "classical", "sim_labels", "real", "real_labels"))
    test = load_split(SIM2REAL / "test", ("sim", "classical", "sim_labels", "real", "real_labels"))
    lr_img, hr_img = sr_test["lr"], sr_test["hr"]
    if lr_img.shape[-1] * scale != hr_img.shape[-1] or lr_img.shape[-2] * scale != hr_img.shape[-2]:
        raise ValueError(f"{SR_DATA / 'test'}: LR {tuple(lr_img.shape[-2:])} x{scale} does not give HR "
                         f"{tuple(hr_img.shape[-2:])}")
    if train["sim"].shape[-1] % 4 or test["sim"].shape[-1] % 4:
        raise ValueError(f"{SIM2REAL}: image size {test['sim'].shape[-1]} is not divisible by 4 (generator strides)")
    # Each split's renderings of the sim labels: the simulator's, the classical translation's, and
    # the CycleGAN's from each of those two inputs.
    renderings = {split: {"raw_sim": data["sim"], "classical": data["classical"],
                          **{f"translated_{source}": predict(g, data[source], runtime, ev.batch_size).clamp(-1, 1)
                             for source, g in translators.items()}}
                  for split, data in (("train", train), ("test", test))}

    encoder_file = weight_file(WEIGHTS_DIR, "resnet18", use="The downstream/judge U-Net encoders") \
        if recipe.encoder == "resnet18" else None

    def fresh_unet():
        model, init = build_unet(recipe.encoder, recipe.encoder_depth, recipe.decoder_channels, len(class_names),
                                 str(encoder_file) if encoder_file else None)
        return runtime.place(model), init

    seeds = [params.seed + k for k in range(ev.downstream_seeds)]
    def randomize(labels, draws):  # SynthSeg-style: a fresh image from every batch's label crops
        return randomized_images(labels, len(class_names) - 1, ev.randomization, draws)

    sim_labels = train["sim_labels"]
    trained = train_downstream({
        "sim_only": TrainingSet(train["sim"], sim_labels),
        "classical": TrainingSet(train["classical"], sim_labels),
        "randomized": TrainingSet(train["sim"], sim_labels, randomize),
        "translated_sim": TrainingSet(renderings["train"]["translated_sim"], sim_labels),
        "translated_classical": TrainingSet(renderings["train"]["translated_classical"], sim_labels),
        "real_oracle": TrainingSet(train["real"], train["real_labels"]),
    }, fresh_unet, recipe, ev.downstream_steps, seeds, train_runtime)
    judge = trained.models["real_oracle"][0]  # the real oracle of the first seed, never used in any loss

    inception_file = weight_file(WEIGHTS_DIR, "inception_fid", use="FID/KID")
    if inception_file is not None:
        extractor, space, space_note = InceptionFeatures(inception_file), schema.INCEPTION_SPACE, "inception_fid"
    else:
        # Not FID: the Fréchet/kernel distances live in the judge U-Net's encoder space and are named for it.
        extractor, space = EncoderFeatures(judge.encoder, "judge_unet_encoder"), "judge_unet_encoder"
        space_note = "judge_unet_encoder (fallback: FID Inception weights unavailable)"
    distances = DistanceMetrics(runtime.place(extractor), space, ev, params.seed, runtime)
    s2r_draws = Resamples.draw(len(test["real"]), ev.bootstrap_resamples, ev.bootstrap_set_resamples, params.seed)
    sr_draws = Resamples.draw(len(hr_img), ev.bootstrap_resamples, ev.bootstrap_set_resamples, params.seed)

    with staged_dir(OUT / "examples") as examples:
        down = score_downstream(trained.models, test["real"], test["real_labels"], class_names, seeds, runtime,
                                s2r_draws, params.seed, ev.batch_size)
        translation = evaluate_translation(renderings["test"], test["real"], test["sim_labels"], test["real_labels"],
                                           judge, class_names, runtime, distances, s2r_draws)
        sr = evaluate_sr(lr_img, hr_img, sr_test["naive"], g_psnr, g_gan, scale, degradation, runtime, distances,
                         sr_draws, ev.n_examples, sr_val["lr"], sr_val["hr"])
        Image.fromarray(sr.grid).save(examples / "sr_grid.png")
        Image.fromarray(sr.calibration_grid).save(examples / "sr_calibration.png")
        s2r_grid, _ = sim2real_grid(renderings["test"], test["real"], translation.judge_labels["translated_classical"],
                                    test["sim_labels"], ev.n_examples)
        Image.fromarray(s2r_grid).save(examples / "sim2real_grid.png")
        metrics = schema.Metrics(
            protocol=build_protocol(ev, recipe, params.seed, len(hr_img), len(test["real"]), scale, DATA_RANGE,
                                    class_names, space, seeds, trained.steps_per_segmenter),
            backbones=schema.Backbones(
                distribution_features=space_note, judge_encoder=trained.encoder_init,
                perceptual_loss_sr=load_weights(G_GAN)["meta"].get("vgg_backbone", "unknown"),
                perceptual_loss_cyclegan=load_weights(TRANSLATORS["classical"])["meta"].get("vgg_backbone", "unknown")),
            sr=sr.section,
            sim2real=schema.Sim2Real(realism=translation.realism, content=translation.content,
                                     translated_vs_raw_sim=translation.translated_vs_raw_sim,
                                     translated_classical_vs_classical=translation.translated_classical_vs_classical,
                                     downstream=down.downstream, downstream_vs_sim_only=down.vs_sim_only,
                                     downstream_vs_classical=down.vs_classical),
            wall_time_s=round(time.perf_counter() - started, 1),
        )
    outputs = {"per_slice.csv": per_slice.to_csv(sr.per_slice + translation.per_slice + down.per_slice, class_names),
               "plots/estimates.json": plots.to_json(plots.estimate_points(metrics)),
               "plots/differences.json": plots.to_json(plots.difference_points(metrics)),
               "plots/reliability.json": plots.to_json(sr.reliability),
               "headline.json": schema.headline(metrics), "metrics.json": schema.to_json(metrics)}
    (OUT / "plots").mkdir(exist_ok=True)
    for name, text in outputs.items():
        write_text(OUT / name, text)
    return {"wall_time_s": metrics.wall_time_s}


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", DESCRIPTION, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
