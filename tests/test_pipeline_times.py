"""benchmarks/pipeline_times.py reads per-stage times off a time-stamped `dvc repro` / `dvc exp run` log."""

from benchmarks.pipeline_times import stage_times

LOG = """\
10:00:00 Stage 'prepare' didn't change, skipping
10:00:01 Running stage 'train_sr':
10:00:05 SR gan phase:  50%|#####     | 320/640
10:02:21 Stage 'baselines' didn't change, skipping
10:02:22 Running stage 'evaluate_sr':
10:03:13 Stage 'evaluate_sim2real' didn't change, skipping
10:03:13 Running stage 'evaluate':
10:03:14 Running stage 'report':
10:03:19 Updating lock file 'dvc.lock'
TOTAL 203 s
"""


def test_each_stage_runs_to_the_next_boundary_and_output_lines_are_not_boundaries():
    times = stage_times(LOG.splitlines())
    assert times["stages"] == {"train_sr": 140, "evaluate_sr": 51, "evaluate": 1, "report": 5}
    assert times["skipped"] == ["prepare", "baselines", "evaluate_sim2real"]
    assert times["total_s"] == 203


def test_a_run_past_midnight_and_a_log_without_a_total():
    times = stage_times(["23:59:50 Running stage 'train_sr_psnr':", "00:02:50 Running stage 'train_sr':",
                         "00:04:00 Updating lock file 'dvc.lock'"])
    assert times["stages"] == {"train_sr_psnr": 180, "train_sr": 70}
    assert times["total_s"] == 250  # first to last stamped line
