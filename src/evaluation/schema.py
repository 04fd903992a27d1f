"""The typed schema of pipeline/evaluate/metrics.json: what `evaluate` writes and `report` reads.

Every number with an interval is an `Estimate` (a `Difference` for a paired comparison
A - B). On disk they are stored flat beside each other, so `dvc exp show` shows them as
columns: `psnr_db`, `psnr_db_ci95_low`, `psnr_db_ci95_high`, `psnr_db_n` (slices or images it
is computed on), `psnr_db_std` (over downstream seeds, where there are seeds) and
`psnr_db_better` (for a difference: true, false or "indistinguishable").

A row (`Row`: metric -> Estimate) must hold exactly the metrics `expected_keys` lists for
it, so a renamed or missing metric fails when the file is read, naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

INCEPTION_SPACE = "inception_fid"
SUFFIXES = ("ci95_low", "ci95_high", "n", "std", "better")

SR_METHODS = ("naive", "psnr_model", "gan_model")
SR_QUALITY = ("psnr_db", "ssim", "data_consistency_psnr_db")
UNCERTAINTY = ("tta_spearman_psnr_model", "tta_spearman_gan_model", "hallucination_spearman")
# Split-conformal calibration of each model's TTA spread (src/evaluation/calibration.py)
CALIBRATED_MODELS = ("psnr_model", "gan_model")
CALIBRATION = ("k_scale", "coverage_val", "coverage_test", "spearman_foreground", "error_detection_auroc", "mean_bound",
               "mean_abs_error")
PSNR_MODEL_VS_NAIVE = ("psnr_db", "ssim")
GAN_VS_PSNR_MODEL = ("psnr_db", "ssim", "swd")
# Sim-to-real renderings of the test sims: the simulator's, the classical translation's (blur +
# histogram matching), and the CycleGAN's from each of those two inputs.
REALISM_SETS = ("raw_sim", "classical", "translated_sim", "translated_classical")
# judge_on_real: the judge on real test slices against their own labels, the bar a translation is held to.
CONTENT_SETS = (*(f"judge_on_{s}" for s in REALISM_SETS), "judge_on_real")
TRANSLATED_VS_INPUT = ("swd", "judge_dice_mean_foreground")  # each translator against its own input
# Paired fidelity: each test rendering against the real slice of the same anatomy (the test sims are rendered
# from their own slice's labels), on the foreground: PSNR, SSIM and MAE (src/metrics/image_quality.py).
FIDELITY = ("psnr_db", "ssim", "mae")
FIDELITY_VS_RAW_SIM_ROWS = ("classical", "translated_sim", "translated_classical")
FIDELITY_VS_CLASSICAL_ROWS = ("translated_sim", "translated_classical")
DOWNSTREAM_ROWS = ("sim_only", "classical", "randomized", "translated_sim", "translated_classical", "real_oracle")
DOWNSTREAM_VS_SIM_ONLY = ("mean_foreground",)
DOWNSTREAM_VS_CLASSICAL_ROWS = ("randomized", "translated_sim", "translated_classical")
# A translator against the strongest free baseline (domain randomisation, ../shared/notes/cyclegan_sim2real.md §7)
DOWNSTREAM_VS_RANDOMIZED_ROWS = ("translated_sim", "translated_classical")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(Frozen):
    value: float
    ci95_low: float
    ci95_high: float
    n: int                      # test slices (or images per set) the value is computed on
    std: float | None = None    # over the downstream seeds; None where there is one model


class Difference(Frozen):
    """A - B, paired over the same resampled slices; `better`: is A better than B?"""
    value: float
    ci95_low: float
    ci95_high: float
    n: int
    better: bool | Literal["indistinguishable"]


Row = dict[str, Estimate]
Comparison = dict[str, Difference]


class SWDProtocol(Frozen):
    descriptors_per_image: int
    directions: int


class KIDProtocol(Frozen):
    subsets: int
    subset_size: int
    effective_subset_size: int
    subset_is_whole_set: bool   # then every subset is the same set: no subset std exists, only the bootstrap interval


class BootstrapProtocol(Frozen):
    method: str
    level: float
    resamples: int
    set_resamples: int
    seed: int
    pairing: str
    set_level: str
    dice: str
    downstream: str
    decision: str


class DownstreamProtocol(Frozen):
    steps: int
    seeds: list[int]
    steps_per_segmenter: dict[str, int]
    segmenter_recipe: dict[str, Any]


class Protocol(Frozen):
    split: Literal["test"]
    seed: int
    n_sr_test: int
    n_sim2real_test: int
    crop_border: int
    data_range: float
    value_range: tuple[float, float]
    class_names: list[str]
    feature_space: str
    swd: SWDProtocol
    kid: KIDProtocol
    bootstrap: BootstrapProtocol
    downstream: DownstreamProtocol
    uncertainty: str


class Backbones(Frozen):
    distribution_features: str
    judge_encoder: str
    perceptual_loss_sr: str
    perceptual_loss_cyclegan: str


class Calibration(Frozen):
    """|error| <= k * sigma_TTA, k fitted on the val split's foreground pixels for `target_coverage` of them."""
    target_coverage: float
    calibration_split: Literal["val"]
    n_val: int
    foreground: str
    sigma: str
    sigma_floor: float
    psnr_model: Row
    gan_model: Row


class SR(Frozen):
    naive: Row
    psnr_model: Row
    gan_model: Row
    uncertainty: Row
    calibration: Calibration
    psnr_model_vs_naive: Comparison
    gan_vs_psnr_model: Comparison


class Realism(Frozen):
    raw_sim: Row
    classical: Row
    translated_sim: Row
    translated_classical: Row


class Fidelity(Frozen):
    """Each rendering of the test sims against the real test slice of the same anatomy, foreground only."""
    raw_sim: Row
    classical: Row
    translated_sim: Row
    translated_classical: Row


class FidelityVsRawSim(Frozen):
    classical: Comparison
    translated_sim: Comparison
    translated_classical: Comparison


class FidelityVsClassical(Frozen):
    translated_sim: Comparison
    translated_classical: Comparison


class Content(Frozen):
    judge_on_raw_sim: Row
    judge_on_classical: Row
    judge_on_translated_sim: Row
    judge_on_translated_classical: Row
    judge_on_real: Row


class Downstream(Frozen):
    sim_only: Row
    classical: Row
    randomized: Row
    translated_sim: Row
    translated_classical: Row
    real_oracle: Row


class DownstreamVsSimOnly(Frozen):
    classical: Comparison
    randomized: Comparison
    translated_sim: Comparison
    translated_classical: Comparison
    real_oracle: Comparison


class DownstreamVsClassical(Frozen):
    """Does a row beat the classical baseline? (A row whose interval straddles 0 is "not distinguishable".)"""
    randomized: Comparison
    translated_sim: Comparison
    translated_classical: Comparison


class DownstreamVsRandomized(Frozen):
    """Does a translated row beat SynthSeg-style randomisation, the strongest rendering a user gets for free?"""
    translated_sim: Comparison
    translated_classical: Comparison


class Sim2Real(Frozen):
    realism: Realism
    fidelity: Fidelity
    fidelity_vs_raw_sim: FidelityVsRawSim
    fidelity_vs_classical: FidelityVsClassical
    content: Content
    translated_vs_raw_sim: Comparison
    translated_classical_vs_classical: Comparison
    downstream: Downstream
    downstream_vs_sim_only: DownstreamVsSimOnly
    downstream_vs_classical: DownstreamVsClassical
    downstream_vs_randomized: DownstreamVsRandomized


class Metrics(Frozen):
    protocol: Protocol
    backbones: Backbones
    sr: SR
    sim2real: Sim2Real
    wall_time_s: float

    @model_validator(mode="after")
    def _rows_hold_their_metrics(self) -> Metrics:
        problems = []
        for path, keys in expected_keys(self.protocol).items():
            row = section(self, path)
            missing = [k for k in keys if k not in row]
            unexpected = [k for k in row if k not in keys]
            problems += [f"{path}.{k}: missing" for k in missing] + [f"{path}.{k}: unexpected key" for k in unexpected]
            if not path.startswith("sim2real.downstream."):  # one model, no seeds: a "std" would be something else
                problems += [f"{path}.{k}_std: only downstream rows (several seeds) have a std"
                             for k, v in row.items() if getattr(v, "std", None) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def distance_keys(feature_space: str) -> tuple[str, str]:
    """(KID key, Fréchet key): `kid`/`fid` only in the FID Inception space, else `kid_<space>`/`fd_<space>`."""
    if feature_space == INCEPTION_SPACE:
        return "kid", "fid"
    return f"kid_{feature_space}", f"fd_{feature_space}"


def higher_is_better(key: str) -> bool:
    """The direction of a metric key: distances (SWD, KID, FD/FID) and MAE lower, everything else (PSNR, SSIM,
    Dice, Spearman, gap closed) higher."""
    return not (key in ("swd", "fid", "kid", "mae") or key.startswith(("kid_", "fd_")))


def foreground(class_names: list[str]) -> list[str]:
    """Class 0 is the background (as in src/metrics/segmentation.py); Dice is reported for the others."""
    return list(class_names[1:])


def expected_keys(protocol: Protocol) -> dict[str, tuple[str, ...]]:
    """Dotted path of every row and comparison -> the metric keys it holds, in display order."""
    distances = ("swd", *distance_keys(protocol.feature_space))
    dice = (*foreground(protocol.class_names), "mean_foreground")
    return {
        **{f"sr.{m}": SR_QUALITY + distances for m in SR_METHODS},
        "sr.uncertainty": UNCERTAINTY,
        **{f"sr.calibration.{m}": CALIBRATION for m in CALIBRATED_MODELS},
        "sr.psnr_model_vs_naive": PSNR_MODEL_VS_NAIVE,
        "sr.gan_vs_psnr_model": GAN_VS_PSNR_MODEL,
        **{f"sim2real.realism.{s}": distances for s in REALISM_SETS},
        **{f"sim2real.fidelity.{s}": FIDELITY for s in REALISM_SETS},
        **{f"sim2real.fidelity_vs_raw_sim.{s}": FIDELITY for s in FIDELITY_VS_RAW_SIM_ROWS},
        **{f"sim2real.fidelity_vs_classical.{s}": FIDELITY for s in FIDELITY_VS_CLASSICAL_ROWS},
        **{f"sim2real.content.{s}": dice for s in CONTENT_SETS},
        "sim2real.translated_vs_raw_sim": TRANSLATED_VS_INPUT,
        "sim2real.translated_classical_vs_classical": TRANSLATED_VS_INPUT,
        **{f"sim2real.downstream.{r}": (*dice, "gap_closed_fraction") for r in DOWNSTREAM_ROWS},
        **{f"sim2real.downstream_vs_sim_only.{r}": DOWNSTREAM_VS_SIM_ONLY for r in DOWNSTREAM_ROWS[1:]},
        **{f"sim2real.downstream_vs_classical.{r}": DOWNSTREAM_VS_SIM_ONLY for r in DOWNSTREAM_VS_CLASSICAL_ROWS},
        **{f"sim2real.downstream_vs_randomized.{r}": DOWNSTREAM_VS_SIM_ONLY for r in DOWNSTREAM_VS_RANDOMIZED_ROWS},
    }


def section(metrics: BaseModel, path: str) -> Any:
    node = metrics
    for part in path.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------- on disk
def flatten(tree: Any) -> Any:
    """{"psnr_db": {"value": v, "ci95_low": l, ...}} -> {"psnr_db": v, "psnr_db_ci95_low": l, ...}, recursively."""
    if not isinstance(tree, dict):
        return tree
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and "ci95_low" in value and "value" in value:
            flat[key] = value["value"]
            flat |= {f"{key}_{s}": value[s] for s in SUFFIXES if value.get(s) is not None}
        else:
            flat[key] = flatten(value)
    return flat


def nest(tree: Any) -> Any:
    """The inverse of `flatten`: every `<key>_<suffix>` of an estimate (one with a `<key>_ci95_*` beside it)
    goes into one dict with `<key>` as its "value"; a missing `<key>` then shows as that dict's missing value."""
    if not isinstance(tree, dict):
        return tree

    def estimate_of(key: str) -> tuple[str, str] | None:
        for suffix in ("value", *SUFFIXES):
            base = key if suffix == "value" else key.removesuffix(f"_{suffix}")
            if (suffix == "value" or base != key) and any(f"{base}_{s}" in tree for s in ("ci95_low", "ci95_high")):
                return base, suffix
        return None

    nested: dict = {}
    for key, value in tree.items():
        found = None if isinstance(value, dict) else estimate_of(key)
        if found is None:
            nested[key] = nest(value)
        else:
            nested.setdefault(found[0], {})[found[1]] = value
    return nested


def to_json(metrics: Metrics) -> str:
    return json.dumps(flatten(metrics.model_dump()), indent=2, allow_nan=True) + "\n"


def from_json(text: str, path: Path | str) -> Metrics:
    """Parse and validate; any problem is a ValueError naming `path` and each flat dotted key."""
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    try:
        return Metrics.model_validate(nest(tree))
    except ValidationError as err:
        raise ValueError(f"{path} does not match the metrics schema of src/evaluation/schema.py "
                         f"(re-run `dvc repro evaluate`): " + "; ".join(_describe(e) for e in err.errors())) from None


def _describe(error: dict) -> str:
    parts = [str(part) for part in error["loc"]]
    if len(parts) > 1 and parts[-1] in ("value", *SUFFIXES):  # back to the flat key on disk
        last = parts.pop()
        parts[-1] += "" if last == "value" else f"_{last}"
    message = "missing" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
    return f"{'.'.join(parts)}: {message}" if parts else message


# ---------------------------------------------------------------- headline metrics for `dvc exp show`
# headline key (short, so `dvc exp show` columns stay readable) -> dotted path of the metric in metrics.json
HEADLINE = {
    "sr.naive.psnr_db": "sr.naive.psnr_db",   # the naive and PSNR-model points of the perception-distortion
    "sr.naive.swd": "sr.naive.swd",           # plot (benchmarks/sweep.py)
    "sr.psnr_model.psnr_db": "sr.psnr_model.psnr_db",
    "sr.psnr_model.swd": "sr.psnr_model.swd",
    "sr.gan.psnr_db": "sr.gan_model.psnr_db",
    "sr.gan.ssim": "sr.gan_model.ssim",
    "sr.gan.swd": "sr.gan_model.swd",
    "sr.psnr_model_vs_naive.psnr_db": "sr.psnr_model_vs_naive.psnr_db",
    "sr.gan_vs_psnr_model.psnr_db": "sr.gan_vs_psnr_model.psnr_db",
    "sr.gan_vs_psnr_model.ssim": "sr.gan_vs_psnr_model.ssim",
    "sr.gan_vs_psnr_model.swd": "sr.gan_vs_psnr_model.swd",
    "sr.coverage90.psnr_model": "sr.calibration.psnr_model.coverage_test",
    "sr.coverage90.gan": "sr.calibration.gan_model.coverage_test",
    "s2r.swd.classical": "sim2real.realism.classical.swd",
    "s2r.swd.translated_sim": "sim2real.realism.translated_sim.swd",
    "s2r.swd.translated_classical": "sim2real.realism.translated_classical.swd",
    "s2r.fidelity_psnr.raw_sim": "sim2real.fidelity.raw_sim.psnr_db",
    "s2r.fidelity_psnr.classical": "sim2real.fidelity.classical.psnr_db",
    "s2r.fidelity_psnr.translated_sim": "sim2real.fidelity.translated_sim.psnr_db",
    "s2r.fidelity_psnr.translated_classical": "sim2real.fidelity.translated_classical.psnr_db",
    "s2r.fidelity_vs_classical.translated_sim": "sim2real.fidelity_vs_classical.translated_sim.psnr_db",
    "s2r.judge_dice.translated_sim": "sim2real.content.judge_on_translated_sim.mean_foreground",
    "s2r.judge_dice.translated_classical": "sim2real.content.judge_on_translated_classical.mean_foreground",
    "s2r.judge_dice.real": "sim2real.content.judge_on_real.mean_foreground",
    "s2r.gap.real_oracle_vs_sim_only": "sim2real.downstream_vs_sim_only.real_oracle.mean_foreground",
    "s2r.gap_closed.classical": "sim2real.downstream.classical.gap_closed_fraction",
    "s2r.gap_closed.randomized": "sim2real.downstream.randomized.gap_closed_fraction",
    "s2r.gap_closed.translated_sim": "sim2real.downstream.translated_sim.gap_closed_fraction",
    "s2r.gap_closed.translated_classical": "sim2real.downstream.translated_classical.gap_closed_fraction",
    "s2r.vs_classical.translated_sim": "sim2real.downstream_vs_classical.translated_sim.mean_foreground",
    "s2r.vs_classical.translated_classical": "sim2real.downstream_vs_classical.translated_classical.mean_foreground",
    "s2r.vs_randomized.translated_sim": "sim2real.downstream_vs_randomized.translated_sim.mean_foreground",
    "s2r.vs_randomized.translated_classical": "sim2real.downstream_vs_randomized.translated_classical.mean_foreground",
}


def headline(metrics: Metrics) -> str:
    """The few numbers an experiment is judged by, with their intervals: pipeline/evaluate/headline.json.

    Short keys (HEADLINE maps each to its metrics.json path); flat suffixes as in metrics.json,
    without `_n` (constant across experiments).
    """
    tree: dict = {}
    for key, path in HEADLINE.items():
        *groups, name = key.split(".")
        node = tree
        for part in groups:
            node = node.setdefault(part, {})
        row_path, metric = path.rsplit(".", 1)
        node[name] = section(metrics, row_path)[metric].model_dump(exclude={"n"})
    return json.dumps(flatten(tree), indent=2, allow_nan=True) + "\n"
