"""DVC stage `baselines`: the downstream segmenters that no translator changes, and the judge.

CyCADA's downstream protocol (src/evaluation/downstream.py): `evaluate.downstream_seeds` fresh U-Nets each for
the rows `sim_only`, `classical`, `randomized` (SynthSeg-style images drawn from the sim labels every batch) and
`real_oracle`, one recipe and budget, scored on the real test slices as per-slice Dice counts. The real oracle
of the first seed is the judge of content preservation (and, without FID Inception weights, the feature space
of the set distances). Split out of `evaluate` so that a CycleGAN or SR experiment does not re-train these
twelve U-Nets: only the prepared data, the segmenter recipe and `evaluate` params re-run it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from src.atomic import staged_dir, write_json
from src.augment.randomization import RandomizedRender
from src.config import Params, as_dict
from src.data.prepared import PREPARED, load_meta, load_split, split_digest
from src.evaluation.downstream import (TrainingSet, downstream_counts, downstream_seeds, train_downstream,
                                       training_processes, unet_builder)
from src.evaluation.parts import COUNTS_FILE, save_counts
from src.pretrained import encoder_weights_file
from src.stage import run_stage
from src.training.checkpoint import save_weights
from src.training.provenance import META_KEY, judge_provenance
from src.training.runtime import make_runtime, seed_everything

OUT = Path("pipeline/baselines")
WEIGHTS_DIR = Path("pipeline/weights")
SIM2REAL = PREPARED / "sim2real"
ROWS = ("sim_only", "classical", "randomized", "real_oracle")
JUDGE_FILE = "judge.pt"
DESCRIPTION = (
    "Train the downstream U-Nets that do not depend on a translator (sim_only, classical, randomized, real_oracle; "
    "evaluate.downstream_seeds each) and score them on the real test slices. Reads data/prepared/sim2real/"
    "{train,test}/, pipeline/weights/ and params.yaml (seed, train.amp, segmenter recipe, evaluate). Writes "
    "pipeline/baselines/: dice_counts.npz (per-slice Dice counts per row and seed), judge.pt (the first real "
    "oracle: the content judge) and baselines.json.")


def baselines(params: Params) -> dict:
    started = time.perf_counter()
    ev, recipe = params.evaluate, params.segmenter
    seed_everything(params.seed)
    # The U-Nets train like every other network, under train.amp; they are scored in fp32.
    runtime = make_runtime(ev.device, amp=False, key="evaluate.device")
    train_runtime = make_runtime(ev.device, params.train.amp, key="evaluate.device")
    class_names = list(load_meta(SIM2REAL / "meta.json")["class_names"])
    train = load_split(SIM2REAL / "train", ("sim", "classical", "sim_labels", "real", "real_labels"))
    test = load_split(SIM2REAL / "test", ("real", "real_labels"))
    encoder_file = encoder_weights_file(WEIGHTS_DIR, recipe.encoder, use="The downstream/judge U-Net encoders")
    seeds = downstream_seeds(params.seed, ev.downstream_seeds)

    sim_labels = train["sim_labels"]
    trained = train_downstream({
        "sim_only": TrainingSet(train["sim"], sim_labels),
        "classical": TrainingSet(train["classical"], sim_labels),
        # SynthSeg-style: a fresh image from every batch's label crops
        "randomized": TrainingSet(train["sim"], sim_labels, RandomizedRender(len(class_names) - 1, ev.randomization)),
        "real_oracle": TrainingSet(train["real"], train["real_labels"]),
    }, unet_builder(recipe, len(class_names), encoder_file, runtime), recipe,
        ev.downstream_steps, seeds, train_runtime,
        training_processes(ev.downstream_processes, train_runtime, len(ROWS) * len(seeds)))
    counts = downstream_counts(trained.models, test["real"], test["real_labels"], len(class_names), runtime,
                               ev.batch_size)
    judge = trained.models["real_oracle"][0]  # never used in any loss
    with staged_dir(OUT) as out:
        save_counts(out / COUNTS_FILE, counts)
        save_weights(out / JUDGE_FILE, judge, {
            "encoder": recipe.encoder, "encoder_depth": recipe.encoder_depth,
            "decoder_channels": list(recipe.decoder_channels), "n_classes": len(class_names),
            "class_names": class_names, "encoder_weights": trained.encoder_init,
            "trained_on": f"real train slices (real_oracle, seed {seeds[0]})",
            META_KEY: judge_provenance(params).as_meta()})
        write_json(out / "baselines.json", {
            "rows": list(ROWS), "seeds": seeds, "steps_per_segmenter": trained.steps_per_segmenter,
            "encoder_init": trained.encoder_init, "n_test": len(test["real"]), "class_names": class_names,
            "test_digest": split_digest(SIM2REAL / "test"), "segmenter_recipe": as_dict(recipe),
            "wall_time_s": round(time.perf_counter() - started, 1)})
    return {"rows": len(ROWS), "segmenters": len(ROWS) * len(seeds), "wall_time_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    return run_stage("baselines", DESCRIPTION, baselines, argv)


if __name__ == "__main__":
    sys.exit(main())
