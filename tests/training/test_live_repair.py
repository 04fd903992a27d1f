"""A kill -9 mid-write leaves dvclive's files cut short; resuming must still work."""

import csv

from dvclive import Live

from src.training.loop import trim_metrics


def log_steps(live_dir, steps):
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for step in steps:
            live.step = step
            live.log_metric("g/loss", 1.0 / (step + 1))
            live.make_summary()


def rows(live_dir):
    with open(live_dir / "plots/metrics/g/loss.tsv", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_cut_summary_and_half_row_are_dropped_and_dvclive_resumes(tmp_path):
    live_dir = tmp_path / "live"
    log_steps(live_dir, range(6))
    summary = live_dir / "metrics.json"
    summary.write_text(summary.read_text()[:7])  # killed while dvclive rewrote it
    with open(live_dir / "plots/metrics/g/loss.tsv", "a") as f:
        f.write("17000000")  # killed half-way through a row

    trim_metrics(live_dir, first_dropped_step=4)

    assert not summary.exists()
    header, *body = rows(live_dir)
    assert [int(r[header.index("step")]) for r in body] == [0, 1, 2, 3]
    with Live(str(live_dir), dvcyaml=False, resume=True, save_dvc_exp=False) as live:
        live.step = 4
        live.log_metric("g/loss", 0.5)
        live.make_summary()
    header, *body = rows(live_dir)
    assert [int(r[header.index("step")]) for r in body] == [0, 1, 2, 3, 4]


def test_intact_summary_is_kept(tmp_path):
    live_dir = tmp_path / "live"
    log_steps(live_dir, range(3))
    before = (live_dir / "metrics.json").read_text()
    trim_metrics(live_dir, first_dropped_step=2)
    assert (live_dir / "metrics.json").read_text() == before
    header, *body = rows(live_dir)
    assert len(body) == 2
