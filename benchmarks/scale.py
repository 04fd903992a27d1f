"""Scale benchmark: `prepare` and one training stage on synthetic cohorts of N subjects (benchmarks/cohort.py).

For each N a workspace in a temporary folder gets the cohort as data.folder (`user/`),
params.yaml (the repository's, with data.source folder, and train.sr step counts made tiny)
and an offline weights manifest (random-init backbones: the perceptual loss's weights do
not change the cost of a step). Then, each in its own process with cwd = the workspace:

    python -m src.prepare    wall time, peak RSS, CPU utilisation
    python -m src.train_sr_psnr, then src.train_sr   peak RSS, steps/s = (psnr_steps + gan_steps) / summed wall time
                                                      (start-ups included), and the loops' own steps/s (each
                                                      stage logs its loop's time)

Peak RSS: the summed resident set of the stage's process tree (psutil, polled every 0.1 s;
shared pages of forked workers count once per process, so it is an upper bound). CPU
utilisation: (user + sys) of the process tree from getrusage(RUSAGE_CHILDREN) before and after
/ wall time; pool workers are joined, so their time is included. 2.0 = two cores busy.

    python benchmarks/scale.py [--sizes 10 50 200 1000] [--seed 0] [--keep]   # about 35 min and 57 GB of disk at 1000

prints a table and merges {"scale": {...}} into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
PSNR_STEPS, GAN_STEPS = 100, 50  # enough loop time (~15 s) to tell it from the start-up
WEIGHTS = ("vgg19", "inception_fid", "resnet18")


def measure(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run `cmd`; its wall time, the peak summed RSS of its process tree and its CPU utilisation."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        root, peak, peak_anon, peak_pss = psutil.Process(proc.pid), 0, 0, 0
        # Pool workers forked by a forkserver are not children of the stage, so getrusage(RUSAGE_CHILDREN) misses
        # them; the tree's CPU time is read by process while it runs (sampled every 0.1 s: a process living less
        # than that can be missed, the larger of both totals is kept).
        cpu_seen: dict[int, float] = {}
        while proc.poll() is None:
            try:
                tree = [root] + root.children(recursive=True)
                info = [p.memory_full_info() for p in tree if p.is_running()]
                for p in tree:  # CPU seconds by process, its reaped children's included, as last seen
                    t = p.cpu_times()
                    cpu_seen[p.pid] = t.user + t.system + t.children_user + t.children_system
                peak = max(peak, sum(i.rss for i in info))
                # rss - shared: the anonymous part, what the processes allocated. The rest is pages of files
                # they map (the memory-mapped arrays prepare writes and reads), which the kernel can drop at will.
                peak_anon = max(peak_anon, sum(i.rss - i.shared for i in info))
                # PSS counts a page shared by k processes 1/k in each (forkserver workers share the parent's
                # imported libraries copy-on-write): the tree's actual footprint, where summed RSS counts them k times.
                peak_pss = max(peak_pss, sum(i.pss for i in info))
            except psutil.Error:
                pass  # a worker ended between listing and reading it
            time.sleep(0.1)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(cpu_seen.values()))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}); log: {log}\n"
                           + log.read_text()[-2000:])
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak / 2**20, 1),
            "peak_anon_rss_mib": round(peak_anon / 2**20, 1), "peak_pss_mib": round(peak_pss / 2**20, 1),
            "cpu_util": round(cpu / wall, 2)}


LOOP_LINE = re.compile(r": (\d+) steps in ([0-9.]+) s of training loop")


def loop_time(log: Path) -> tuple[int, float]:
    """(steps, seconds) of the training loop alone, from the line src/training/loop.py logs when it ends."""
    found = LOOP_LINE.findall(log.read_text())
    if not found:
        raise RuntimeError(f"{log}: no 'steps in ... s of training loop' line (did the stage train?)")
    steps, seconds = found[-1]
    return int(steps), float(seconds)


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


def workspace(root: Path, n: int, seed: int, subjects: Path, image_size: int | None = None) -> Path:
    """A working directory with the first n subjects (links into `subjects`), params.yaml and an offline
    weights manifest."""
    for kind in ("images", "labels"):
        (root / "user" / kind).mkdir(parents=True)
        for i in range(n):
            name = f"sub{i:03d}.nii.gz"
            (root / "user" / kind / name).symlink_to(subjects / kind / name)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="folder", folder="user")
    if image_size is not None:
        raw["data"]["image_size"] = image_size
    raw["train"]["sr"].update(psnr_steps=PSNR_STEPS, gan_steps=GAN_STEPS, sample_every=10**6,
                              checkpoint_every=10**6)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    weights = root / "pipeline/weights"
    weights.mkdir(parents=True)
    (weights / "manifest.json").write_text(json.dumps(
        {name: {"status": "unavailable", "description": name, "reason": "scale benchmark: offline"} for name in WEIGHTS}))
    return root


# What prepare writes per subject at data.image_size 128 (SR and sim-to-real sets, scratch stacks, leakage
# descriptors) at its peak: about 57 GB for the 1000-subject cohort (disk use, 2026-12-04), plus a margin. A run
# without room for it fails deep inside prepare (a first N=1000 run did, with 33 GB free), so the run checks for
# its largest size before it starts. The sizes run one after another, each workspace removed before the next.
BYTES_PER_SUBJECT_128 = 60e6


def check_disk(n: int, image_size: int | None, folder: Path) -> None:
    size = image_size or yaml.safe_load((REPO / "params.yaml").read_text())["data"]["image_size"]
    needed = n * BYTES_PER_SUBJECT_128 * (size / 128) ** 2
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise SystemExit(f"{folder}: {free / 1e9:.0f} GB free, but prepare needs about {needed / 1e9:.0f} GB for "
                         f"N={n} at data.image_size {size}; free space, set TMPDIR, or pass --image-size")


def run_size(n: int, seed: int, keep: bool, subjects: Path, image_size: int | None = None) -> dict:
    load_at_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix=f"scale-{n}-"))
    try:
        ws = workspace(root, n, seed, subjects, image_size)
        try:
            prep = measure([sys.executable, "-m", "src.prepare"], ws, root / "prepare.log")
        except RuntimeError as err:  # e.g. killed by the kernel's OOM killer (exit -9): a result, recorded
            return {"subjects": n, "failed": f"prepare: {str(err).splitlines()[0]}"}
        slices = json.loads((ws / "data/prepared/sr/meta.json").read_text())["counts"]
        # The leakage check is the one O(N^2) part: its time is stated apart, and the per-subject time excludes it.
        prep["leakage_s"] = json.loads((ws / "data/prepared/manifest.json").read_text())["leakage"]["wall_time_s"]
        # The two SR stages in dvc.yaml's order; one row for both: peak memory of either, steps over their summed time.
        phases, loops = [], []
        for stage in ("train_sr_psnr", "train_sr"):
            log = root / f"{stage}.log"
            phases.append(measure([sys.executable, "-m", f"src.{stage}"], ws, log))
            loops.append(loop_time(log))
        train = {key: max(p[key] for p in phases) for key in phases[0] if key.startswith("peak_")}
        train["wall_s"] = round(sum(p["wall_s"] for p in phases), 2)
        train["cpu_util"] = round(sum(p["cpu_util"] * p["wall_s"] for p in phases) / train["wall_s"], 2)
        train["steps_per_s"] = round((PSNR_STEPS + GAN_STEPS) / train["wall_s"], 2)
        steps, loop_s = sum(n for n, _ in loops), sum(s for _, s in loops)
        train["loop_steps_per_s"] = round(steps / loop_s, 2)
        train["startup_s"] = round(train["wall_s"] - loop_s, 2)
        size = yaml.safe_load((ws / "params.yaml").read_text())["data"]["image_size"]
        return {"subjects": n, "image_size": size, "sr_slices": slices, "prepare": prep, "train_sr": train,
                "commit": COMMIT, "load_avg_1min_at_start": load_at_start}
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def scale_targets(rows: dict[str, dict]) -> list[dict]:
    """Issue 22's targets over the cohorts measured (smallest, 50 when measured, largest)."""
    if len(rows) < 2:
        return []
    sizes = sorted(rows, key=int)
    small, large = rows[sizes[0]], rows[sizes[-1]]
    mid = rows.get("50", small)
    n_small, n_mid, n_large = small["subjects"], mid["subjects"], large["subjects"]

    def per_subject(row: dict) -> float:  # s per subject without the O(N^2) leakage check
        return (row["prepare"]["wall_s"] - row["prepare"].get("leakage_s", 0.0)) / row["subjects"]
    peak = max(r["prepare"]["peak_rss_mib"] for r in rows.values())
    peak_pss = max(r["prepare"].get("peak_pss_mib", float("nan")) for r in rows.values())
    growth = large["prepare"]["peak_rss_mib"] / mid["prepare"]["peak_rss_mib"]
    growth_pss = large["prepare"].get("peak_pss_mib", float("nan")) / mid["prepare"].get("peak_pss_mib", float("nan"))
    time_ratio = per_subject(large) / per_subject(small)
    util = sum(r["prepare"]["cpu_util"] for r in rows.values()) / len(rows)
    train_rss = large["train_sr"]["peak_rss_mib"] / small["train_sr"]["peak_rss_mib"]
    with_loop = all("loop_steps_per_s" in r["train_sr"] for r in (small, large))
    speed_key = "loop_steps_per_s" if with_loop else "steps_per_s"
    train_speed = large["train_sr"][speed_key] / small["train_sr"][speed_key]
    return [
        {"name": "prepare peak RSS MiB (summed over the process tree), largest over every N", "value": peak,
         "target": "<= 4096", "pass": peak <= 4096},
        {"name": "prepare peak PSS MiB (the tree's footprint), largest over every N", "value": peak_pss,
         "target": "<= 4096", "pass": peak_pss <= 4096},
        {"name": f"prepare peak RSS, N={n_large} / N={n_mid}", "value": growth, "target": "<= 1.2",
         "pass": growth <= 1.2},
        {"name": f"prepare peak PSS, N={n_large} / N={n_mid}", "value": growth_pss, "target": "<= 1.2",
         "pass": growth_pss <= 1.2},
        {"name": f"prepare s per subject without the leakage check, N={n_large} / N={n_small}", "value": time_ratio,
         "target": "<= 1.1", "pass": time_ratio <= 1.1},
        {"name": "prepare CPU utilisation (cores busy), mean over N", "value": util,
         "target": f">= 1.7 of {os.cpu_count()}", "pass": util >= 1.7},
        {"name": f"train_sr peak RSS, N={n_large} / N={n_small}", "value": train_rss, "target": "<= 1.2 (flat)",
         "pass": train_rss <= 1.2},
        {"name": f"train_sr {speed_key.replace('_', ' ')}, N={n_large} / N={n_small}", "value": train_speed,
         "target": ">= 0.8 (flat)", "pass": train_speed >= 0.8},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (their paths go to stderr)")
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "scale-cohort",
                        help="where the subjects are generated once and kept (default: %(default)s)")
    parser.add_argument("--generate-only", action="store_true", help="make the cohort, measure nothing")
    parser.add_argument("--image-size", type=int, help="data.image_size for every size (default: params.yaml's)")
    args = parser.parse_args()
    if not args.generate_only and not args.keep:
        check_disk(max(args.sizes), args.image_size, Path(tempfile.gettempdir()))
    subjects = cohort(args.cohort, max(args.sizes), args.seed)
    load_at_start = os.getloadavg()[0]  # 1-min load average as the measurements start (after the cohort is made)
    if args.generate_only:
        return 0
    rows = [run_size(n, args.seed, args.keep, subjects, args.image_size) for n in args.sizes]
    print(f"{'N':>5} {'prepare s':>10} {'of it leakage s':>16} {'prepare peak RSS MiB':>21} {'anon':>6} {'PSS':>6} "
          f"{'cpu util':>9} {'train peak RSS MiB':>19} {'steps/s':>8}")
    for r in rows:
        if "failed" in r:
            print(f"{r['subjects']:>5} failed: {r['failed']}")
            continue
        p, t = r["prepare"], r["train_sr"]
        print(f"{r['subjects']:>5} {p['wall_s']:>10.1f} {p.get('leakage_s', float('nan')):>16.1f} "
              f"{p['peak_rss_mib']:>21.0f} {p.get('peak_anon_rss_mib', 0):>6.0f} {p.get('peak_pss_mib', 0):>6.0f} "
              f"{p['cpu_util']:>9.2f} "
              f"{t['peak_rss_mib']:>19.0f} {t['steps_per_s']:>8.2f}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    scale = results.get("scale", {})
    # The targets read every row on record, earlier runs' sizes included (each row names its commit), so a size
    # re-measured alone (--sizes 200) updates its row without dropping the comparison across sizes.
    merged = {**scale.get("rows", {}), **{str(r["subjects"]): r for r in rows}}
    targets = scale_targets({n: r for n, r in merged.items() if "failed" not in r})
    for t in targets:
        print(f"{t['name']}: {t['value']:.3g} (target {t['target']}): {'met' if t['pass'] else 'MISSED'}")
    scale["targets"] = targets
    scale.update({
        "method": {"rss": "peak of the summed RSS of the stage's process tree, psutil polled every 0.1 s",
                   "cpu_util": "(user + sys) of the process tree (the larger of getrusage RUSAGE_CHILDREN and "
                               "psutil's per-process times sampled every 0.1 s, which include forkserver workers) "
                               "/ wall time",
                   "steps_per_s": f"({PSNR_STEPS} + {GAN_STEPS}) train_sr steps / wall time, start-up included",
                   "loop_steps_per_s": "steps / seconds of the training loop alone, from the line each SR stage "
                                       "logs when its loop ends (src/training/loop.py)",
                   "startup_s": "wall time - the loops' time: imports, the train split's provenance hash, loading, "
                                "the final validation, saving",
                   "cpus": os.cpu_count(), "cohort": "benchmarks/cohort.py (deformed MNI152)",
                   "leakage_s": "the leakage check's own time (manifest.json), O(N^2); excluded from s per subject"},
        "machine": {"cpu_flags": sorted(set(open("/proc/cpuinfo").read().split()) & {"avx512f", "avx512_bf16",
                                                                                     "amx_bf16"}),
                    "load_avg_1min_at_start": load_at_start},
        "date": time.strftime("%Y-%m-%d"),
        "rows": merged,
    })
    results["scale"] = scale
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
