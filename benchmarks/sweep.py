"""Perception-distortion sweep collector: one point per experiment, PSNR against SWD of the GAN model.

Reads `dvc exp show --json` (runs it, or reads a saved copy given with --json), and takes from
each row (the workspace, each baseline commit and each of its experiments) the SR GAN weight
train.sr.lambda_adv and, from pipeline/evaluate/headline.json, the test-split PSNR and SWD of the
GAN model with their 95 % intervals, and of the naive reconstruction and the PSNR model (the
reference points: the GAN's distance from them is the trade). Prints a table and writes
benchmarks/sweep.json and benchmarks/sweep.png.

The sweep (README, "Experiments"), then this script:

    dvc exp run --queue -S 'train.sr.lambda_adv=0.0,5.0e-3,2.0e-2,5.0e-2,1.0e-1' && dvc queue start
    python -m benchmarks.sweep                      # or: python -m benchmarks.sweep --json saved.json

Rows without an evaluated headline (queued, running or failed experiments) are listed with their
state and left out of the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HEADLINE = "pipeline/evaluate/headline.json"
PARAMS = "params.yaml"
OUT_JSON, OUT_PNG = Path("benchmarks/sweep.json"), Path("benchmarks/sweep.png")
# point -> headline path of its PSNR and SWD (schema.HEADLINE in src/evaluation/schema.py)
POINTS = {"gan": ("sr.gan.psnr_db", "sr.gan.swd"), "psnr_model": ("sr.psnr_model.psnr_db", "sr.psnr_model.swd"),
          "naive": ("sr.naive.psnr_db", "sr.naive.swd")}


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def estimate(headline: dict, dotted: str) -> dict | None:
    """{"value", "ci95_low", "ci95_high"} of a headline metric (flat `<key>_ci95_*` beside `<key>`), or None."""
    group, key = dotted.rsplit(".", 1)
    row = lookup(headline, group) or {}
    if row.get(key) is None:
        return None
    return {"value": row[key], "ci95_low": row.get(f"{key}_ci95_low"), "ci95_high": row.get(f"{key}_ci95_high")}


def states(exp_show: list[dict]):
    """(label, kind, state dict, executor state) for every row of `dvc exp show --json`, baselines first.

    The format (dvc 3.x, dvc/repo/experiments/serialize.py): a list of baseline ExpStates {rev, name,
    data, error, experiments}; `experiments` is a list of ExpRanges {name, revs: [ExpState], executor}.
    """
    if not isinstance(exp_show, list):
        raise ValueError("expected the JSON list that `dvc exp show --json` prints")
    for baseline in exp_show:
        label = baseline.get("name") or (baseline["rev"] if baseline["rev"] == "workspace" else baseline["rev"][:7])
        yield label, "workspace" if baseline["rev"] == "workspace" else "baseline", baseline, None
        for exp_range in baseline.get("experiments") or []:
            executor = (exp_range.get("executor") or {}).get("state")
            for state in exp_range.get("revs", []):
                yield exp_range.get("name") or state.get("name") or state["rev"][:7], "experiment", state, executor


def collect(exp_show: list[dict]) -> list[dict]:
    """One record per row: name, kind, state, lambda_adv and the three points' PSNR/SWD estimates (None if absent)."""
    records = []
    for name, kind, state, executor in states(exp_show):
        data = state.get("data") or {}
        params = ((data.get("params") or {}).get(PARAMS) or {}).get("data") or {}
        headline = ((data.get("metrics") or {}).get(HEADLINE) or {}).get("data")
        if state.get("error") or executor not in (None, "success"):
            # A failed experiment's row repeats its baseline's metrics in `dvc exp show`: not its own result.
            headline = None
        record = {"name": name, "kind": kind, "rev": state.get("rev"),
                  "state": "error" if state.get("error") else executor or ("done" if headline else "no metrics"),
                  "lambda_adv": lookup(params, "train.sr.lambda_adv")}
        for point, (psnr_key, swd_key) in POINTS.items():
            record[point] = {"psnr_db": estimate(headline or {}, psnr_key), "swd": estimate(headline or {}, swd_key)}
        records.append(record)
    return records


def complete(record: dict, point: str) -> bool:
    values = record[point]
    return all(v is not None and v["value"] is not None and math.isfinite(v["value"]) for v in values.values())


def table(records: list[dict]) -> str:
    def cell(item: dict | None) -> str:
        if item is None:
            return "—"
        low, high = item["ci95_low"], item["ci95_high"]
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        return f"{item['value']:.2f}{interval}"

    lines = ["| experiment | state | λ_adv | GAN PSNR (dB) ↑ | GAN SWD ↓ | PSNR-model PSNR | PSNR-model SWD | naive PSNR "
             "| naive SWD |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lam = "—" if r["lambda_adv"] is None else f"{r['lambda_adv']:g}"
        lines.append(f"| {r['name']} ({r['kind']}) | {r['state']} | {lam} | " + " | ".join(
            cell(r[p][m]) for p in ("gan", "psnr_model", "naive") for m in ("psnr_db", "swd")) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """PSNR (y) against SWD (x), one GAN point per experiment labelled with its λ_adv, with 95 % whiskers on both
    axes; the PSNR-model and naive points as reference markers (each distinct point once)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5), dpi=110, layout="constrained")
    ax = fig.subplots()
    styles = {"gan": ("o", "C0", "GAN model (one per experiment, λ_adv)"), "psnr_model": ("s", "C2", "PSNR model"),
              "naive": ("^", "C3", "naive reconstruction")}
    for point, (marker, colour, legend) in styles.items():
        shown, seen = [], set()
        for r in records:  # a point shared by several rows (the workspace repeating HEAD, one PSNR model) once
            key = complete(r, point) and (r[point]["psnr_db"]["value"], r[point]["swd"]["value"])
            if key and key not in seen:
                seen.add(key)
                shown.append(r)
        for index, r in enumerate(shown):
            psnr, swd = r[point]["psnr_db"], r[point]["swd"]
            xerr = [[swd["value"] - (swd["ci95_low"] or swd["value"])], [(swd["ci95_high"] or swd["value"]) - swd["value"]]]
            yerr = [[psnr["value"] - (psnr["ci95_low"] or psnr["value"])],
                    [(psnr["ci95_high"] or psnr["value"]) - psnr["value"]]]
            ax.errorbar(swd["value"], psnr["value"], xerr=xerr, yerr=yerr, fmt=marker, color=colour, ms=7,
                        elinewidth=0.8, capsize=2, alpha=0.9, label=legend if index == 0 else None)
            if point == "gan" and r["lambda_adv"] is not None:
                ax.annotate(f"λ={r['lambda_adv']:g}", (swd["value"], psnr["value"]), textcoords="offset points",
                            xytext=(6, 4), fontsize=8)
    ax.set_xlabel("SWD to the HR test slices (×10³) ↓  (perception: distance to the real distribution)")
    ax.set_ylabel("PSNR on the test split (dB) ↑  (distortion)")
    ax.set_title("SR perception–distortion sweep (95 % intervals)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def read_exp_show(json_path: Path | None) -> list[dict]:
    if json_path is not None:
        return json.loads(json_path.read_text())
    result = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`dvc exp show --json` failed ({result.returncode}): {result.stderr.strip()} "
                           "(is the venv on PATH? see `make metrics`)")
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="a saved `dvc exp show --json` output (default: run it)")
    parser.add_argument("--out-json", type=Path, default=OUT_JSON)
    parser.add_argument("--out-png", type=Path, default=OUT_PNG)
    args = parser.parse_args(argv)
    try:
        records = collect(read_exp_show(args.json))
    except (OSError, ValueError, RuntimeError) as err:
        print(f"sweep: {err}", file=sys.stderr)
        return 1
    print(table(records))
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(records, indent=1) + "\n")
    plot(records, args.out_png)
    print(f"wrote {args.out_json} and {args.out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
