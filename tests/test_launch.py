"""src/launch.py: a training stage runs in the launcher's own process for train.nproc 1 and under torchrun
for more; bad input is refused with the params key named."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.launch import main, torchrun_argv

REPO = Path(__file__).resolve().parents[1]


def launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src.launch", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_one_process_runs_the_stage_module_itself_with_its_arguments_and_exit_status():
    shown = launch("1", "src.template", "--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.startswith("usage: python -m src.template")
    refused = launch("1", "src.template", "--no-such-option")
    assert refused.returncode == 2 and "--no-such-option" in refused.stderr


def test_more_processes_become_torchrun_with_the_stage_and_its_arguments():
    assert torchrun_argv(2, "src.train_cyclegan", ["--input", "sim"]) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "src.train_cyclegan", "--input", "sim"]


@pytest.mark.parametrize("nproc", ["0", "-1", "two", "1.5"])
def test_a_bad_process_count_names_the_params_key(nproc, capsys):
    assert main([nproc, "src.template"]) == 2
    assert "train.nproc" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["1"], ["1", "os"]])
def test_a_missing_or_foreign_module_is_refused(argv, capsys):
    assert main(argv) == 2
    assert "usage: python -m src.launch" in capsys.readouterr().err
