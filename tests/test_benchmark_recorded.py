"""benchmarks/recorded.py: the measure-or-print command line of the quality benchmarks."""

import json
import sys

import pytest

from benchmarks.recorded import measure_or_print


def table(result: dict) -> str:
    return f"value {result['value']}"


def test_measuring_writes_the_result_and_prints_its_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench"])
    calls = []
    results = tmp_path / "result.json"
    assert measure_or_print("Doc line.\nMore.", results, lambda: calls.append(1) or {"value": 3}, table, threads=1) == 0
    assert calls == [1]
    assert json.loads(results.read_text()) == {"value": 3}
    assert "value 3" in capsys.readouterr().out


def test_table_prints_the_recorded_result_without_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--table"])
    results = tmp_path / "result.json"
    results.write_text(json.dumps({"value": 7}))
    assert measure_or_print("Doc.", results, lambda: pytest.fail("measured"), table, threads=1) == 0
    assert capsys.readouterr().out.strip() == "value 7"


def test_table_of_a_missing_result_names_the_file_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--table"])
    results = tmp_path / "none.json"
    assert measure_or_print("Doc.", results, lambda: pytest.fail("measured"), table, threads=1) == 2
    assert str(results) in capsys.readouterr().err
    assert not results.exists()


def test_scoring_the_pipeline_models_without_them_names_the_files_and_writes_nothing(tmp_path, monkeypatch):
    from benchmarks import sr_pipeline_test
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sr_pipeline_test"])
    with pytest.raises(SystemExit, match="pipeline/train_sr_psnr/g_psnr.pt, pipeline/train_sr/g_gan.pt: not found"):
        sr_pipeline_test.main()
    assert not (tmp_path / sr_pipeline_test.RESULTS).exists()
