"""benchmarks/sweep.py reads `dvc exp show --json`: a recorded fixture in dvc 3.67's format.

tests/fixtures/dvc_exp_show.json is this repository's own `dvc exp show --json` (the workspace and
HEAD, deps/outs trimmed) with a train.sr.lambda_adv sweep added as experiments of HEAD, serialised by
dvc's own classes (dvc/repo/experiments/serialize.py: ExpRange, ExpState, ExpExecutor): four finished
experiments, one queued, one failed. The sweep's metric values are invented for the test.
"""

import json
from pathlib import Path

import pytest

from benchmarks import sweep

FIXTURE = Path(__file__).parent / "fixtures/dvc_exp_show.json"


@pytest.fixture(scope="module")
def records():
    return sweep.collect(json.loads(FIXTURE.read_text()))


def test_every_row_is_collected_with_its_state(records):
    assert [(r["name"], r["kind"], r["state"]) for r in records] == [
        ("workspace", "workspace", "done"), ("main", "baseline", "done"),
        ("bally-pits", "experiment", "success"), ("tiled-doek", "experiment", "success"),
        ("sunny-oxen", "experiment", "success"), ("prime-vows", "experiment", "success"),
        ("timid-deal", "experiment", "queued"), ("faint-ruby", "experiment", "error")]


def test_lambda_adv_and_the_gan_point_come_from_params_and_headline(records):
    by_name = {r["name"]: r for r in records}
    assert [by_name[n]["lambda_adv"] for n in ("main", "bally-pits", "tiled-doek", "sunny-oxen", "prime-vows")] == \
        [0.005, 0.0, 0.02, 0.05, 0.1]
    gan = by_name["sunny-oxen"]["gan"]
    assert gan["psnr_db"] == {"value": 28.31, "ci95_low": 28.17, "ci95_high": 28.45}
    assert gan["swd"] == {"value": 19.6, "ci95_low": 17.1, "ci95_high": 22.1}
    assert by_name["sunny-oxen"]["naive"]["psnr_db"]["value"] == 26.39
    assert by_name["sunny-oxen"]["psnr_model"]["swd"]["value"] == 24.9
    assert sweep.complete(by_name["prime-vows"], "gan")


def test_rows_without_metrics_are_kept_but_not_plottable(records):
    by_name = {r["name"]: r for r in records}
    assert by_name["timid-deal"]["lambda_adv"] == 0.2 and by_name["timid-deal"]["gan"]["psnr_db"] is None
    assert by_name["faint-ruby"]["lambda_adv"] is None
    assert not sweep.complete(by_name["faint-ruby"], "gan")
    # the workspace headline predates sr.naive / sr.psnr_model.swd: those points are missing, not an error
    assert by_name["workspace"]["naive"]["swd"] is None and sweep.complete(by_name["workspace"], "gan")


def test_a_failed_experiment_showing_its_baselines_metrics_is_not_a_point():
    """Measured with dvc 3.67: a queued experiment whose `report` stage failed is listed with the
    state "failed" and its baseline's headline in `data`; that is not its own result."""
    exp_show = json.loads(FIXTURE.read_text())
    baseline = exp_show[1]
    failed = next(r for r in baseline["experiments"] if r["executor"]["state"] == "failed")
    failed["revs"][0].update(data=baseline["data"], error=None)
    by_name = {r["name"]: r for r in sweep.collect(exp_show)}
    assert by_name["faint-ruby"]["state"] == "failed"
    assert not sweep.complete(by_name["faint-ruby"], "gan") and by_name["faint-ruby"]["gan"]["psnr_db"] is None
    assert sweep.complete(by_name["main"], "gan")


def test_cli_writes_table_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    assert sweep.main(["--json", str(FIXTURE), "--out-json", str(out_json), "--out-png", str(out_png)]) == 0
    printed = capsys.readouterr().out
    assert "| sunny-oxen (experiment) | success | 0.05 | 28.31 [28.17, 28.45] | 19.60 [17.10, 22.10] |" in printed
    assert len(json.loads(out_json.read_text())) == 8
    assert out_png.read_bytes().startswith(b"\x89PNG")


def test_not_the_exp_show_format_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"workspace": {}}))
    assert sweep.main(["--json", str(bad), "--out-json", str(tmp_path / "s.json"), "--out-png", str(tmp_path / "s.png")]) == 1
    assert "dvc exp show --json" in capsys.readouterr().err
