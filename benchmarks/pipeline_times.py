"""Wall time of whole pipeline commands, per stage: `dvc repro` and `dvc exp run -S ...`, on this machine.

Runs the command in the current repository, stamps each line of its output with the time, and takes each
stage's time from one `Running stage '<name>'` line to the next event (the next stage, a skipped stage or the
end). The row records what the figure depends on: the CPU's native-bf16 flags (what `train.amp: auto`
resolves to), its measured fp32 / bf16 matmul peaks (machines with the same flags differ: an EPYC with
AVX512-BF16 measured 408 / 2892 GFLOP/s in one session and 165 / 371 in another), and the 1-minute load
average at the start (time only on a quiet machine: under 0.5, nothing else running).

    python -m benchmarks.pipeline_times run --label default_repro -- dvc repro
    python -m benchmarks.pipeline_times run --label exp_lambda_adv -- dvc exp run -S train.sr.lambda_adv=0.05
    python -m benchmarks.pipeline_times parse --label NAME --log FILE   # a log already stamped as below
    python -m benchmarks.pipeline_times table

Rows are merged by label into benchmarks/pipeline_times.json; a stamped log line is `HH:MM:SS <text>`, the
total `TOTAL <seconds> s`. Restore the workspace after an experiment (`git checkout -- params.yaml dvc.lock
pipeline && git clean -fd pipeline && dvc checkout`): `dvc exp run` applies its results to it. The `git clean`
removes the live-plot files the experiment added to uncached outputs (e.g. the cycle loss of a
`train.lambda_cycle` run): left there, DVC sees those outputs as modified and the next timed command re-runs
their stages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path("benchmarks/pipeline_times.json")
STAMPED = re.compile(r"^(\d\d):(\d\d):(\d\d) (.*)$")
RUNNING = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
TOTAL = re.compile(r"^TOTAL (\d+(?:\.\d+)?) s$")


def stage_times(lines: list[str]) -> dict:
    """{"stages": {name: seconds}, "skipped": [names], "total_s": seconds} from a stamped log.

    A stage runs from its `Running stage` line to the next stamped event; the last one to the final stamped
    line (dvc's own lock-file update after it is a second at most). Times past midnight wrap once.
    """
    events, skipped, total = [], [], None
    for line in lines:
        if (m := TOTAL.match(line.strip())) is not None:
            total = float(m.group(1))
            continue
        if (m := STAMPED.match(line)) is None:
            continue
        seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
        if events and seconds < events[-1][0]:
            seconds += 24 * 3600
        text = m.group(4)
        if (run := RUNNING.search(text)) is not None:
            events.append((seconds, run.group(1)))
        elif (skip := SKIPPED.search(text)) is not None:
            skipped.append(skip.group(1))
            events.append((seconds, None))
        else:
            events.append((seconds, ""))
    stages, current = {}, None
    for seconds, name in events:
        if name == "":  # an ordinary output line: no boundary
            continue
        if current is not None:  # a stage starts or one is skipped: the running one has ended
            stages[current[1]] = seconds - current[0]
        current = (seconds, name) if name else None
    if current is not None and events:
        stages[current[1]] = events[-1][0] - current[0]
    if total is None and events:
        total = float(events[-1][0] - events[0][0])
    return {"stages": stages, "skipped": skipped, "total_s": total}


def machine() -> dict:
    import torch

    from benchmarks.fp32_head_to_head import cpu_model
    from benchmarks.speed import matmul_peak_gflops
    from src.training.runtime import CPU_BF16_FLAGS, cpu_flags
    cpu = torch.device("cpu")
    return {"cpu_model": cpu_model(), "cpu_bf16_flags": sorted(CPU_BF16_FLAGS & cpu_flags()),
            "cpu_threads": torch.get_num_threads(),
            "matmul_peak_gflop_s": {"fp32": round(matmul_peak_gflops(torch.float32, cpu), 1),
                                    "bf16": round(matmul_peak_gflops(torch.bfloat16, cpu), 1)}}


def run_stamped(cmd: list[str], log: Path) -> list[str]:
    """Run `cmd`, writing its output to `log` with a time stamp per line; the stamped lines."""
    start = time.monotonic()
    lines = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # dvc and the stages print through a pipe: no block buffering
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          env=env) as proc, \
            open(log, "w") as out:
        for raw in proc.stdout:
            for part in raw.rstrip("\n").split("\r"):  # progress bars redraw with \r
                if part.strip():
                    line = f"{dt.datetime.now():%H:%M:%S} {part[:300]}"
                    lines.append(line)
                    out.write(line + "\n")
    if proc.returncode != 0:
        sys.exit(f"error: pipeline_times: {' '.join(cmd)} exited {proc.returncode}; its log: {log}")
    lines.append(f"TOTAL {time.monotonic() - start:.0f} s")
    return lines


def save(label: str, row: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[label] = row
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def print_table(results: dict) -> None:
    for label, row in results.items():
        m = row["machine"]
        peaks = m.get("matmul_peak_gflop_s", {})
        print(f"{label}: `{row['command']}`  total {minutes(row['total_s'])}  ({row['date']}, load "
              f"{row['load_avg_1min_at_start']}, bf16 flags {m['cpu_bf16_flags'] or 'none'}, matmul peak "
              f"fp32/bf16 {peaks.get('fp32', '?')}/{peaks.get('bf16', '?')} GFLOP/s)")
        for stage, seconds in row["stages"].items():
            print(f"    {stage:32} {minutes(seconds)}")
        if row.get("note"):
            print(f"    note: {row['note']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_times", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run a command and record its stage times")
    run.add_argument("--label", required=True)
    run.add_argument("--note", default="")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="after --: the command, e.g. dvc repro")
    parse = sub.add_parser("parse", help="record the stage times of a stamped log")
    parse.add_argument("--label", required=True)
    parse.add_argument("--log", type=Path, required=True)
    parse.add_argument("--command", required=True, help="the command the log is of")
    parse.add_argument("--load", type=float, required=True, help="1-minute load average at its start")
    parse.add_argument("--date", required=True)
    parse.add_argument("--note", default="")
    sub.add_parser("table", help="print the recorded rows")
    args = parser.parse_args(argv)

    if args.action == "table":
        print_table(json.loads(RESULTS.read_text()) if RESULTS.exists() else {})
        return 0
    if args.action == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("run: give the command after --")
        load = round(os.getloadavg()[0], 2)  # before the matmul probe, which loads the CPU itself
        info = machine()  # before the run: the probe must not overlap it
        lines = run_stamped(cmd, Path(f"/tmp/pipeline_times_{args.label}.log"))
        row = {"command": " ".join(cmd), "date": f"{dt.date.today()}", "load_avg_1min_at_start": load}
    else:
        lines = args.log.read_text(errors="replace").splitlines()
        info = machine()
        row = {"command": args.command, "date": args.date, "load_avg_1min_at_start": args.load}
    row.update(stage_times(lines), machine=info, note=args.note)
    save(args.label, row)
    print_table({args.label: row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
