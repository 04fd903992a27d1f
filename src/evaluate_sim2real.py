"""DVC stage `evaluate_sim2real`: the translators on the held-out test split, against every free baseline.

Each translator (train_cyclegan@<input>) renders the train and test sims. On the test split: realism
(SWD/KID/FD to the real slices), paired fidelity (foreground PSNR/SSIM/MAE of each rendering against the real
slice of the same anatomy) and content preservation (the judge's Dice), src/evaluation/sim2real.py. Downstream:
`evaluate.downstream_seeds` U-Nets per translated row, scored together with the rows of `baselines` from their
per-slice Dice counts, so every comparison is paired in slices and seeds (src/evaluation/downstream.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image

from src.atomic import staged_dir
from src.config import Params, as_dict
from src.data.prepared import PREPARED, load_meta, load_split, split_digest
from src.evaluation.distances import DistanceMetrics, feature_space
from src.evaluation.downstream import (TrainingSet, downstream_counts, downstream_seeds, score_counts,
                                       train_downstream, training_processes, unet_builder)
from src.evaluation.examples import sim2real_grid
from src.evaluation.intervals import Resamples
from src.evaluation.models import load_translator
from src.evaluation.parts import COUNTS_FILE, check_same, load_counts, write_part
from src.evaluation.schema import DOWNSTREAM_ROWS, Sim2Real
from src.evaluation.sim2real import evaluate_translation
from src.evaluation.sr import DATA_RANGE
from src.pretrained import encoder_weights_file, weight_file
from src.stage import run_stage
from src.training.artifacts import load_segmenter
from src.training.checkpoint import load_weights
from src.training.inference import predict
from src.training.provenance import judge_provenance, translator_provenance
from src.training.runtime import make_runtime, seed_everything

OUT = Path("pipeline/evaluate_sim2real")
WEIGHTS_DIR = Path("pipeline/weights")
SIM2REAL = PREPARED / "sim2real"
BASELINES = Path("pipeline/baselines")
TRANSLATORS = {source: Path(f"pipeline/train_cyclegan/{source}/g_sim2real.pt") for source in ("sim", "classical")}
DESCRIPTION = (
    "Score the sim-to-real translators on the test split. Reads data/prepared/sim2real/{train,test}/, "
    "pipeline/train_cyclegan/{sim,classical}/g_sim2real.pt, pipeline/baselines/ (judge, Dice counts of the "
    "untranslated rows), pipeline/weights/ and params.yaml (seed, train.amp, segmenter recipe, evaluate). Trains "
    "evaluate.downstream_seeds U-Nets per translated row. Writes pipeline/evaluate_sim2real/: part.json (the "
    "sim2real section), per_slice.json, examples/sim2real_grid.png.")


def score_sim2real(params: Params) -> dict:
    started = time.perf_counter()
    ev, recipe = params.evaluate, params.segmenter
    seed_everything(params.seed)
    runtime = make_runtime(ev.device, amp=False, key="evaluate.device")
    train_runtime = make_runtime(ev.device, params.train.amp, key="evaluate.device")
    # Fail fast on missing data or a missing or mismatched model or part before minutes of segmenter training;
    # the data first: without a sim-to-real split (inputs without labels) no translator can ever exist.
    meta = load_meta(SIM2REAL / "meta.json")
    class_names = list(meta["class_names"])
    translators = {source: runtime.place(load_translator(path, source, expected=translator_provenance(params, source)))
                   for source, path in TRANSLATORS.items()}
    baselines_info = _read_baselines(params, class_names)
    baseline_counts = load_counts(BASELINES / COUNTS_FILE, tuple(baselines_info["rows"]), "baselines")
    judge, _ = load_segmenter(BASELINES / "judge.pt", judge_provenance(params))
    judge = runtime.place(judge)
    train = load_split(SIM2REAL / "train", ("sim", "classical", "sim_labels"))
    test = load_split(SIM2REAL / "test", ("sim", "classical", "sim_labels", "real", "real_labels"))
    if train["sim"].shape[-1] % 4 or test["sim"].shape[-1] % 4:
        raise ValueError(f"{SIM2REAL}: image size {test['sim'].shape[-1]} is not divisible by 4 (generator strides)")
    # Each split's renderings of the sim labels: the simulator's, the classical translation's, and
    # the CycleGAN's from each of those two inputs.
    renderings = {split: {"raw_sim": data["sim"], "classical": data["classical"],
                          **{f"translated_{source}": predict(g, data[source], runtime, ev.batch_size).clamp(-1, 1)
                             for source, g in translators.items()}}
                  for split, data in (("train", train), ("test", test))}

    seeds = baselines_info["seeds"]
    translated_rows = tuple(f"translated_{source}" for source in translators)
    encoder_file = encoder_weights_file(WEIGHTS_DIR, recipe.encoder, use="The downstream U-Net encoders")
    trained = train_downstream({row: TrainingSet(renderings["train"][row], train["sim_labels"])
                                for row in translated_rows},
                               unet_builder(recipe, len(class_names), encoder_file, runtime), recipe,
                               ev.downstream_steps, seeds, train_runtime,
                               training_processes(ev.downstream_processes, train_runtime,
                                                  len(translated_rows) * len(seeds)))
    check_same({str(BASELINES / "baselines.json"): baselines_info["encoder_init"],
                "this stage's U-Nets": trained.encoder_init}, "the U-Net encoder init")
    counts = {**baseline_counts, **downstream_counts(trained.models, test["real"], test["real_labels"],
                                                     len(class_names), runtime, ev.batch_size)}
    draws = Resamples.draw(len(test["real"]), ev.bootstrap_resamples, ev.bootstrap_set_resamples, params.seed)
    down = score_counts({row: counts[row] for row in DOWNSTREAM_ROWS}, class_names, seeds, draws, params.seed)

    extractor, space, space_note = feature_space(weight_file(WEIGHTS_DIR, "inception_fid", use="FID/KID"), judge)
    distances = DistanceMetrics(runtime.place(extractor), space, ev, params.seed, runtime)
    translation = evaluate_translation(renderings["test"], test["real"], test["sim_labels"], test["real_labels"],
                                       judge, class_names, runtime, distances, draws, DATA_RANGE,
                                       aligned=bool(meta.get("val_test_aligned", False)))
    section = Sim2Real(realism=translation.realism, fidelity=translation.fidelity,
                       fidelity_vs_raw_sim=translation.fidelity_vs_raw_sim,
                       fidelity_vs_classical=translation.fidelity_vs_classical, content=translation.content,
                       translated_vs_raw_sim=translation.translated_vs_raw_sim,
                       translated_classical_vs_classical=translation.translated_classical_vs_classical,
                       downstream=down.downstream, downstream_vs_sim_only=down.vs_sim_only,
                       downstream_vs_classical=down.vs_classical, downstream_vs_randomized=down.vs_randomized)
    grid, _ = sim2real_grid(renderings["test"], test["real"], translation.judge_labels["translated_classical"],
                            test["sim_labels"], ev.n_examples)
    with staged_dir(OUT) as out:
        (out / "examples").mkdir()
        Image.fromarray(grid).save(out / "examples" / "sim2real_grid.png")
        write_part(out, {
            "sim2real": section.model_dump(), "n_test": len(test["real"]), "class_names": class_names,
            "feature_space": space, "distribution_features": space_note, "seeds": seeds,
            "steps_per_segmenter": {**baselines_info["steps_per_segmenter"], **trained.steps_per_segmenter},
            "encoder_init": baselines_info["encoder_init"], "segmenter_recipe": as_dict(recipe),
            "perceptual_loss_cyclegan": load_weights(TRANSLATORS["classical"])["meta"].get("vgg_backbone", "unknown"),
            "test_digest": baselines_info["test_digest"],
            "wall_time_s": round(time.perf_counter() - started, 1),
            "baselines_wall_time_s": baselines_info["wall_time_s"]}, translation.per_slice + down.per_slice)
    return {"n_test": len(test["real"]), "wall_time_s": time.perf_counter() - started}


def _read_baselines(params: Params, class_names: list[str]) -> dict:
    """baselines.json, checked against this run: the same seeds, classes and test data, or an error naming it."""
    path = BASELINES / "baselines.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (written by stage baselines: `dvc repro baselines`)")
    keys = ("rows", "seeds", "class_names", "test_digest", "encoder_init", "steps_per_segmenter", "wall_time_s")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); re-run `dvc repro baselines`") from None
    missing = [key for key in keys if key not in info] if isinstance(info, dict) else list(keys)
    if missing:
        raise ValueError(f"{path}: lacks {missing}; re-run `dvc repro baselines`")
    expected = {"seeds": downstream_seeds(params.seed, params.evaluate.downstream_seeds),
                "class_names": class_names, "test_digest": split_digest(SIM2REAL / "test")}
    stale = [key for key, value in expected.items() if info[key] != value]
    if stale:
        raise ValueError(f"{path}: computed with other {', '.join(stale)} than this run's (params.yaml seed / "
                         f"evaluate.downstream_seeds, data/prepared/sim2real/test); re-run `dvc repro baselines`")
    return info


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate_sim2real", DESCRIPTION, score_sim2real, argv)


if __name__ == "__main__":
    sys.exit(main())
