"""The pipeline's own SR models on the test split, as the SR screens score val: the GAN / PSNR-model SWD ratio.

evaluate_sr reports each model's SWD and the paired SWD difference; issue 20's target is the ratio (GAN SWD over
the PSNR model's, <= 0.8 with the interval's high end < 0.9). This scores the committed models
(pipeline/train_sr_psnr/g_psnr.pt, pipeline/train_sr/g_gan.pt) with the screens' own scorer
(`benchmarks.sr_ablation.score`: evaluate's SWD settings, the ratio's 95 % interval from the same resampled slice
sets for both models, shifted as evaluate's set-distance intervals), plus the PSNR differences and SWD per level.

It reads the test split, so it reports a configuration already chosen on val; it chooses nothing.

    python -m benchmarks.sr_pipeline_test            # writes benchmarks/sr_pipeline_test.json, prints the table
    python -m benchmarks.sr_pipeline_test --table
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.recorded import measure_or_print
from benchmarks.sr_ablation import interval, score
from benchmarks.sr_discriminator import machine
from src.config import load_params
from src.training.runtime import make_runtime

RESULTS = Path("benchmarks/sr_pipeline_test.json")
MODELS = {"g_psnr.pt": Path("pipeline/train_sr_psnr/g_psnr.pt"), "g_gan.pt": Path("pipeline/train_sr/g_gan.pt")}


def measure() -> dict:
    missing = [str(path) for path in MODELS.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)}: not found; run `dvc repro train_sr` (or `dvc pull`) first")
    seed = load_params("params.yaml").seed
    with tempfile.TemporaryDirectory(prefix="sr_pipeline_test_") as tmp:
        for name, path in MODELS.items():   # `score` reads both models from one folder
            shutil.copy(path, Path(tmp) / name)
        result = score(Path(tmp), "test", seed, make_runtime("cpu", False))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"what": "the committed pipeline's SR models on the test split (fp32 scoring)", "commit": commit,
            "machine": machine(), "test": result}


def table(result: dict) -> str:
    test = result["test"]
    lines = [f"SR models of commit {result['commit']}, test split",
             f"{'model':12} {'PSNR (dB)':>26} {'SWD':>24}  SWD levels 128 / 64 / 32 / 16 px"]
    for model in ("naive", "psnr_model", "gan_model"):
        levels = " / ".join(f"{v:.2f}" for v in test[model]["swd_levels"].values())
        lines.append(f"{model:12} {interval(test[model]['psnr_db'], 2):>26} {interval(test[model]['swd'], 1):>24}  "
                     f"{levels}")
    lines += [f"PSNR model - naive (dB): {interval(test['psnr_model_minus_naive_db'], 2)}",
              f"GAN - naive (dB):        {interval(test['gan_minus_naive_db'], 2)}",
              f"GAN / PSNR-model SWD:    {interval(test['gan_swd_over_psnr_model_swd'], 3)}"]
    return "\n".join(lines)


def main() -> int:
    return measure_or_print(__doc__, RESULTS, measure, table, threads=2)


if __name__ == "__main__":
    sys.exit(main())
