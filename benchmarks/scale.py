"""Scale benchmark: `prepare` and one training stage on synthetic cohorts of N subjects (benchmarks/cohort.py).

For each N a workspace in a temporary folder gets the cohort as data.folder (`user/`),
params.yaml (the repository's, with data.source folder, and train.sr step counts made tiny)
and an offline weights manifest (random-init backbones: the perceptual loss's weights do
not change the cost of a step). Then, each in its own process with cwd = the workspace:

    python -m src.prepare    wall time, peak RSS, CPU utilisation
    python -m src.train_sr   peak RSS, steps/s = (psnr_steps + gan_steps) / wall time (start-up included)

Peak RSS: the summed resident set of the stage's process tree (psutil, polled every 0.1 s;
shared pages of forked workers count once per process, so it is an upper bound). CPU
utilisation: (user + sys) of the process tree from getrusage(RUSAGE_CHILDREN) before and after
/ wall time; pool workers are joined, so their time is included. 2.0 = two cores busy.

    python benchmarks/scale.py [--sizes 10 50 200] [--seed 0] [--keep]

prints a table and merges {"scale": {...}} into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.cohort import write_cohort  # noqa: E402

RESULTS = REPO / "benchmarks" / "results.json"
PSNR_STEPS, GAN_STEPS = 20, 10
WEIGHTS = ("vgg19", "inception_fid", "resnet18")


def measure(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run `cmd`; its wall time, the peak summed RSS of its process tree and its CPU utilisation."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root] + root.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass  # a worker ended between listing and reading it
            time.sleep(0.1)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}); log: {log}\n"
                           + log.read_text()[-2000:])
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak / 2**20, 1), "cpu_util": round(cpu / wall, 2)}


def cohort(folder: Path, n: int, seed: int) -> Path:
    """`folder` holding subjects 0 .. n-1, made once: a cohort of N is the first N of a larger one
    (benchmarks/cohort.py), so the sizes share their subjects and are generated only once."""
    marker = folder / "seed.txt"
    if marker.is_file() and marker.read_text() != str(seed):
        shutil.rmtree(folder)  # another seed's subjects
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(seed))
    write_cohort(folder, n, seed)  # makes only the subjects not there yet
    return folder


def workspace(root: Path, n: int, seed: int, subjects: Path) -> Path:
    """A working directory with the first n subjects (links into `subjects`), params.yaml and an offline
    weights manifest."""
    for kind in ("images", "labels"):
        (root / "user" / kind).mkdir(parents=True)
        for i in range(n):
            name = f"sub{i:03d}.nii.gz"
            (root / "user" / kind / name).symlink_to(subjects / kind / name)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="folder", folder="user")
    raw["train"]["sr"].update(psnr_steps=PSNR_STEPS, gan_steps=GAN_STEPS, sample_every=10**6,
                              checkpoint_every=10**6)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    weights = root / "pipeline/weights"
    weights.mkdir(parents=True)
    (weights / "manifest.json").write_text(json.dumps(
        {name: {"status": "unavailable", "description": name, "reason": "scale benchmark: offline"} for name in WEIGHTS}))
    return root


def run_size(n: int, seed: int, keep: bool, subjects: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"scale-{n}-"))
    try:
        ws = workspace(root, n, seed, subjects)
        try:
            prep = measure([sys.executable, "-m", "src.prepare"], ws, root / "prepare.log")
        except RuntimeError as err:  # e.g. killed by the kernel's OOM killer (exit -9): a result, recorded
            return {"subjects": n, "failed": f"prepare: {str(err).splitlines()[0]}"}
        slices = json.loads((ws / "data/prepared/sr/meta.json").read_text())["counts"]
        train = measure([sys.executable, "-m", "src.train_sr"], ws, root / "train_sr.log")
        train["steps_per_s"] = round((PSNR_STEPS + GAN_STEPS) / train["wall_s"], 2)
        return {"subjects": n, "sr_slices": slices, "prepare": prep, "train_sr": train}
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def scale_targets(rows: dict[str, dict]) -> list[dict]:
    """Issue 12's targets, between the smallest and the largest cohort measured."""
    if len(rows) < 2:
        return []
    small, large = (rows[k] for k in sorted(rows, key=int)[::len(rows) - 1])
    n_small, n_large = small["subjects"], large["subjects"]
    rss = large["train_sr"]["peak_rss_mib"] / small["train_sr"]["peak_rss_mib"]
    per_subject = (large["prepare"]["wall_s"] / n_large) / (small["prepare"]["wall_s"] / n_small)
    util = min(r["prepare"]["cpu_util"] for r in rows.values())
    return [
        {"name": f"train_sr peak RSS, N={n_large} / N={n_small}", "value": rss, "target": "<= 1.3", "pass": rss <= 1.3},
        {"name": f"prepare s per subject, N={n_large} / N={n_small}", "value": per_subject,
         "target": "<= 1.1 (at most linear in N)", "pass": per_subject <= 1.1},
        {"name": "prepare CPU utilisation (cores busy), lowest N", "value": util,
         "target": f">= 1.5 of {os.cpu_count()} (uses both cores)", "pass": util >= 1.5},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (their paths go to stderr)")
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "scale-cohort",
                        help="where the subjects are generated once and kept (default: %(default)s)")
    parser.add_argument("--generate-only", action="store_true", help="make the cohort, measure nothing")
    args = parser.parse_args()
    subjects = cohort(args.cohort, max(args.sizes), args.seed)
    if args.generate_only:
        return 0
    rows = [run_size(n, args.seed, args.keep, subjects) for n in args.sizes]
    print(f"{'N':>5} {'prepare s':>10} {'prepare peak RSS MiB':>21} {'cpu util':>9} {'train peak RSS MiB':>19} "
          f"{'steps/s':>8}")
    for r in rows:
        if "failed" in r:
            print(f"{r['subjects']:>5} failed: {r['failed']}")
            continue
        p, t = r["prepare"], r["train_sr"]
        print(f"{r['subjects']:>5} {p['wall_s']:>10.1f} {p['peak_rss_mib']:>21.0f} {p['cpu_util']:>9.2f} "
              f"{t['peak_rss_mib']:>19.0f} {t['steps_per_s']:>8.2f}")
    targets = scale_targets({str(r["subjects"]): r for r in rows if "failed" not in r})
    for t in targets:
        print(f"{t['name']}: {t['value']:.3g} (target {t['target']}): {'met' if t['pass'] else 'MISSED'}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    scale = results.get("scale", {})
    scale["targets"] = targets
    scale.update({
        "method": {"rss": "peak of the summed RSS of the stage's process tree, psutil polled every 0.1 s",
                   "cpu_util": "(user + sys) of the process tree (getrusage RUSAGE_CHILDREN) / wall time",
                   "steps_per_s": f"({PSNR_STEPS} + {GAN_STEPS}) train_sr steps / wall time, start-up included",
                   "cpus": os.cpu_count(), "cohort": "benchmarks/cohort.py (deformed MNI152)"},
        "date": time.strftime("%Y-%m-%d"),
        "rows": {**scale.get("rows", {}), **{str(r["subjects"]): r for r in rows}},
    })
    results["scale"] = scale
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
