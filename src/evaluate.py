"""DVC stage `evaluate`: assemble the evaluation parts into pipeline/evaluate/, every number with its 95 % interval.

The work is done by three stages split along their dependencies, so an experiment re-runs only what its
changed params touch: `baselines` (the downstream U-Nets no translator changes, and the judge),
`evaluate_sr` (the SR models of train_sr_psnr and train_sr) and `evaluate_sim2real` (train_cyclegan's
translators and the translated rows). This stage checks that the parts agree (feature space, seeds, test data)
and writes metrics.json (schema: src/evaluation/schema.py), headline.json (for `dvc exp show`), per_slice.csv,
plots/ (interval charts, SR reliability) and examples/, in seconds.

The outputs are published as one set (src/atomic.py, `staged_set`): a failure or kill leaves the previous set or
the new one, never a mix. A copy of the last published set is kept in pipeline/.evaluate-previous/ and put back
when a run fails (DVC deletes the outputs before running the stage, and the `cache: false` ones are in no DVC
cache). One run at a time: pipeline/.evaluate.lock.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from src.atomic import keeping_previous, staged_set
from src.config import Params
from src.evaluation import per_slice, plots, schema
from src.evaluation.parts import check_same, read_part
from src.evaluation.protocol import build_protocol
from src.stage import run_stage
from src.training.lock import output_lock

OUT = Path("pipeline/evaluate")
# dvc.yaml's outputs of the stage, in the order they are renamed into place (the set is committed before).
OUTPUTS = ("examples", "per_slice.csv", "plots/estimates.json", "plots/differences.json", "plots/reliability.json",
           "headline.json", "metrics.json")
LOCK = Path("pipeline/.evaluate.lock")  # beside pipeline/evaluate, so that the folder holds only outputs
SR_PART = Path("pipeline/evaluate_sr")
SIM2REAL_PART = Path("pipeline/evaluate_sim2real")
SR_KEYS = ("sr", "n_test", "scale", "data_range", "feature_space", "distribution_features", "perceptual_loss_sr", "wall_time_s")
SIM2REAL_KEYS = ("sim2real", "n_test", "class_names", "feature_space", "distribution_features", "seeds",
                 "steps_per_segmenter", "encoder_init", "segmenter_recipe", "perceptual_loss_cyclegan", "wall_time_s",
                 "baselines_wall_time_s")
DESCRIPTION = (
    "Assemble the evaluation. Reads pipeline/evaluate_sr/ and pipeline/evaluate_sim2real/ (part.json, "
    "per_slice.json, examples/, reliability.json) and params.yaml (seed, evaluate: the protocol section). Writes pipeline/evaluate/: metrics.json, headline.json, per_slice.csv, plots/*.json, examples/, "
    "all together; keeps a copy of them in pipeline/.evaluate-previous/, put back when a run fails.")


def assemble(params: Params) -> dict:
    # The lock first: a second run must fail before it touches anything, the previous set included.
    with output_lock(LOCK, "evaluate", OUT, why="two runs would publish a mix of each other's outputs"), \
            keeping_previous(OUT, OUTPUTS):
        metrics, files, examples = assembled(params)
        with staged_set(OUT, OUTPUTS) as staging:
            (staging / "examples").mkdir()
            for png in examples:
                shutil.copyfile(png, staging / "examples" / png.name)
            (staging / "plots").mkdir()
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
    return {"wall_time_s": metrics.wall_time_s}


def assembled(params: Params) -> tuple[schema.Metrics, dict[str, str], list[Path]]:
    """The metrics, {output file: its text} for every output but examples/, and the example PNGs of the parts."""
    sr_part, sr_rows = read_part(SR_PART, "evaluate_sr", SR_KEYS)
    s2r_part, s2r_rows = read_part(SIM2REAL_PART, "evaluate_sim2real", SIM2REAL_KEYS)
    parts = {str(SR_PART / "part.json"): sr_part, str(SIM2REAL_PART / "part.json"): s2r_part}
    space = check_same({where: p["feature_space"] for where, p in parts.items()}, "the feature space")
    space_note = check_same({where: p["distribution_features"] for where, p in parts.items()}, "the feature space")
    class_names, seeds = s2r_part["class_names"], s2r_part["seeds"]
    steps = {row: s2r_part["steps_per_segmenter"][row] for row in schema.DOWNSTREAM_ROWS}
    try:
        metrics = schema.Metrics(
            protocol=build_protocol(params.evaluate, s2r_part["segmenter_recipe"], params.seed, sr_part["n_test"],
                                    s2r_part["n_test"], sr_part["scale"], sr_part["data_range"], class_names, space, seeds, steps),
            backbones=schema.Backbones(distribution_features=space_note, judge_encoder=s2r_part["encoder_init"],
                                       perceptual_loss_sr=sr_part["perceptual_loss_sr"],
                                       perceptual_loss_cyclegan=s2r_part["perceptual_loss_cyclegan"]),
            sr=sr_part["sr"], sim2real=s2r_part["sim2real"],
            # The evaluation's compute, part by part: what one `dvc repro` from nothing spends on it.
            wall_time_s=round(sr_part["wall_time_s"] + s2r_part["wall_time_s"] + s2r_part["baselines_wall_time_s"], 1))
    except ValueError as err:  # pydantic's ValidationError is a ValueError: name the parts, not a traceback
        raise ValueError(f"{SR_PART / 'part.json'} and {SIM2REAL_PART / 'part.json'} do not assemble into the "
                         f"metrics schema ({err}); re-run `dvc repro evaluate_sr evaluate_sim2real`") from None
    outputs = {"per_slice.csv": per_slice.to_csv(sr_rows + s2r_rows, class_names),
               "plots/estimates.json": plots.to_json(plots.estimate_points(metrics)),
               "plots/differences.json": plots.to_json(plots.difference_points(metrics)),
               "plots/reliability.json": (SR_PART / "reliability.json").read_text(),
               "headline.json": schema.headline(metrics), "metrics.json": schema.to_json(metrics)}
    examples = [png for part in (SR_PART, SIM2REAL_PART) for png in sorted((part / "examples").glob("*.png"))]
    return metrics, outputs, examples


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", DESCRIPTION, assemble, argv)


if __name__ == "__main__":
    sys.exit(main())
