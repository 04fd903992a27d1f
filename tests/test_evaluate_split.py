"""The evaluation split along its dependencies (baselines, evaluate_sr, evaluate_sim2real, then evaluate) gives
the numbers of one run, whatever process or order the stages run in, and refuses parts that do not belong together.

The split exists so that DVC re-runs only what an experiment changed; it must not change a number. Each stage
seeds itself, so the parts do not depend on what ran before them in the same process. (At the split, the
assembled metrics.json was checked against the single-stage `evaluate` it replaced on this tiny tree: every
metric identical but wall_time_s.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_evaluate_errors import REPO, make_tree, one_thread, run_evaluation, write_params  # noqa: F401 (autouse)

from src import baselines, evaluate, evaluate_sim2real, evaluate_sr

OUTPUTS = ("metrics.json", "headline.json", "per_slice.csv", "plots/estimates.json", "plots/differences.json",
           "plots/reliability.json")


def tiny_run(root: Path, seeds: int = 2, processes: int | str = 1) -> Path:
    make_tree(root)
    path = write_params(root)
    raw = yaml.safe_load(path.read_text())
    raw["evaluate"].update(downstream_seeds=seeds, bootstrap_resamples=200, bootstrap_set_resamples=40,
                           downstream_processes=processes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def outputs(root: Path) -> dict[str, object]:
    files = {name: (root / "pipeline/evaluate" / name).read_text() for name in OUTPUTS}
    metrics = json.loads(files.pop("metrics.json"))
    metrics.pop("wall_time_s")  # the only field that may differ between runs
    return {"metrics.json": metrics, **files}


def test_separate_processes_and_another_order_give_the_same_files(tmp_path, monkeypatch):
    # A: each stage in its own process, dvc.yaml's order (as `dvc repro`), the U-Nets trained in two spawned
    # processes of one thread each (evaluate.downstream_processes, as `auto` gives on a 2-core machine).
    a = tmp_path / "a"
    a.mkdir()
    params = tiny_run(a, processes=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for stage in ("baselines", "evaluate_sr", "evaluate_sim2real", "evaluate"):
        done = subprocess.run([sys.executable, "-m", f"src.{stage}", "--params", str(params)], cwd=a, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{stage}: {done.stderr[-2000:]}"
    # B: one process, the sim-to-real part before the SR part (another order dvc may choose), U-Nets one at a time.
    b = tmp_path / "b"
    b.mkdir()
    monkeypatch.chdir(b)
    params_b = tiny_run(b)
    assert run_evaluation(params_b, (baselines, evaluate_sim2real, evaluate_sr, evaluate)) == 0
    first, second = outputs(a), outputs(b)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    assert "fidelity" in first["metrics.json"]["sim2real"]


def test_assembly_refuses_parts_of_other_seeds_and_names_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = tiny_run(tmp_path)
    assert run_evaluation(params, (baselines,)) == 0
    # The user raised evaluate.downstream_seeds and re-ran evaluate_sim2real by hand, not baselines.
    raw = yaml.safe_load(params.read_text())
    raw["evaluate"]["downstream_seeds"] = 3
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert run_evaluation(params, (evaluate_sr, evaluate_sim2real)) == 1
    err = capsys.readouterr().err
    assert "pipeline/baselines/baselines.json" in err and "dvc repro baselines" in err and "seeds" in err
    assert not Path("pipeline/evaluate_sim2real").exists()


def test_assembly_refuses_parts_in_different_feature_spaces(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = tiny_run(tmp_path)
    assert run_evaluation(params) == 0
    before = Path("pipeline/evaluate/metrics.json").read_bytes()
    part = Path("pipeline/evaluate_sr/part.json")
    tree = json.loads(part.read_text())
    tree["feature_space"] = "inception_fid"  # as if evaluate_sr had run with FID weights and the other part not
    part.write_text(json.dumps(tree))
    assert evaluate.main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "feature space" in err and str(part) in err
    assert Path("pipeline/evaluate/metrics.json").read_bytes() == before


@pytest.mark.parametrize("broken", ["missing", "not json", "no sr section"])
def test_assembly_names_a_missing_or_broken_part(tmp_path, monkeypatch, capsys, broken):
    monkeypatch.chdir(tmp_path)
    params = tiny_run(tmp_path, seeds=1)
    assert run_evaluation(params) == 0
    part = Path("pipeline/evaluate_sr/part.json")
    if broken == "missing":
        part.unlink()
    elif broken == "not json":
        part.write_text("{")
    else:
        tree = json.loads(part.read_text())
        del tree["sr"]
        part.write_text(json.dumps(tree))
    assert evaluate.main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert str(part) in err and "evaluate_sr" in err
