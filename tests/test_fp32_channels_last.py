"""benchmarks/fp32_channels_last.py times the same fp32 steps in two memory layouts. Its figures only mean that if
each side really runs in its layout, in fp32, and the speed-up is taken per step from the medians of the rounds."""

import pytest

import benchmarks.speed as speed_module
from benchmarks.fp32_channels_last import step_times, table


@pytest.mark.parametrize("channels_last", [False, True])
def test_each_side_runs_fp32_in_its_layout_and_leaves_speed_as_it_was(monkeypatch, channels_last):
    seen = []

    def fake_speed(params, runtime, steps):
        seen.append((runtime.channels_last, runtime.amp, speed_module.head_to_head(params, runtime, None, steps, True)))
        return {"roofline": [{"step": "sr_psnr_step", "s_per_step": 0.5}]}

    monkeypatch.setattr(speed_module, "speed", fake_speed)
    head_to_head = speed_module.head_to_head
    assert step_times(channels_last, 3) == {"sr_psnr_step": 0.5}
    assert seen == [(channels_last, False, None)]   # the CycleGAN head-to-head is skipped while timing ...
    assert speed_module.head_to_head is head_to_head   # ... and restored afterwards


def test_speed_up_is_the_ratio_of_each_sides_median():
    runs = {"nchw": [{"a": 0.30, "b": 1.0}, {"a": 0.10, "b": 1.0}, {"a": 0.20, "b": 1.0}],
            "channels_last": [{"a": 0.10, "b": 2.0}, {"a": 0.40, "b": 2.0}, {"a": 0.05, "b": 2.0}]}
    rows = {row["step"]: row for row in table(runs)}
    assert rows["a"]["speedup_median"] == 2.0   # 0.20 / 0.10
    assert rows["b"]["speedup_median"] == 0.5
    assert rows["a"]["nchw_s"] == [0.30, 0.10, 0.20]


def test_table_of_a_missing_result_names_the_file_and_exits_2(tmp_path, capsys):
    from benchmarks.fp32_channels_last import main
    missing = tmp_path / "none.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["--table", "--out", str(missing)])
    assert exit_info.value.code == 2
    assert str(missing) in capsys.readouterr().err


def test_table_prints_a_recorded_result_without_timing(tmp_path, capsys, monkeypatch):
    from benchmarks import fp32_channels_last
    monkeypatch.setattr(fp32_channels_last, "step_times", lambda *args: pytest.fail("--table must not time"))
    recorded = tmp_path / "recorded.json"
    recorded.write_text('{"machine": "m", "rows": [{"step": "s", "nchw_s": [1.0], "channels_last_s": [0.5], '
                        '"speedup_median": 2.0}]}')
    assert fp32_channels_last.main(["--table", "--out", str(recorded)]) == 0
    assert "2.0x" in capsys.readouterr().out
