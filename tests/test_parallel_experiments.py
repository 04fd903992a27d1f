"""The README's parallel-experiments recipe: `dvc exp run --queue` twice, `dvc queue start -j 2`, `dvc exp show`.

A throwaway git+DVC repo with one stage that squares params.yaml's `x` into metrics.json. Both queued
experiments must succeed with y = x * x, the workspace must keep x = 1, and no queue worker (or anything
else started inside the repo) may outlive the test. Concurrency itself is not asserted: two workers are
allowed, whether they overlap in time depends on the machine.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
DVC = VENV_BIN / "dvc"
QUEUED_X = (2, 3)

SQUARE = """\
import json
import yaml

with open("params.yaml") as f:
    x = yaml.safe_load(f)["x"]
with open("metrics.json", "w") as f:
    json.dump({"y": x * x}, f)
"""

DVC_YAML = {"stages": {"square": {
    "cmd": "python square.py",
    "deps": ["square.py"],
    "params": ["x"],
    "metrics": [{"metrics.json": {"cache": False}}],
}}}

pytestmark = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="the leftover-process check reads /proc")


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No user or system git/DVC config, no shared site cache; dvc on PATH (the queue spawns workers as `dvc`)."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
    }


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def make_repo(root: Path, env: dict[str, str]) -> None:
    root.mkdir()
    run(["git", "init", "-q"], root, env)
    run(["git", "config", "user.name", "test"], root, env)
    run(["git", "config", "user.email", "test@example.com"], root, env)
    (root / "params.yaml").write_text("x: 1\n")
    (root / "square.py").write_text(SQUARE)
    (root / "dvc.yaml").write_text(json.dumps(DVC_YAML, indent=2))  # JSON is YAML; no quoting traps in `cmd`
    run([DVC, "init", "-q"], root, env)
    run(["git", "add", "params.yaml", "square.py", "dvc.yaml", ".dvc", ".dvcignore"], root, env)
    run(["git", "commit", "-q", "-m", "square x"], root, env)


def experiments(show: list[dict]) -> list[dict]:
    """Flatten `dvc exp show --json` (dvc 3) into one dict per experiment of the baseline."""
    baseline = next(row for row in show if row["rev"] != "workspace")
    rows = []
    for exp in baseline["experiments"] or []:
        data = exp["revs"][0]["data"]
        metrics = data["metrics"].get("metrics.json", {}).get("data", {})
        rows.append({"name": exp["name"], "rev": exp["revs"][0]["rev"], "state": exp["executor"]["state"],
                     "x": data["params"]["params.yaml"]["data"]["x"], "y": metrics.get("y")})
    return rows


def exp_show(root: Path, env: dict[str, str]) -> list[dict]:
    return json.loads(run([DVC, "exp", "show", "--json"], root, env))


def queue_finished(root: Path, env: dict[str, str]) -> bool:
    """Have all queued experiments ended? A poll may land while a worker deletes what it ran from: its executor
    info file (.dvc/tmp/exps/run/<rev>/<rev>.run) or its temporary workspace (.dvc/tmp/exps/tmpXXXX, seen once
    in a full `make test`, 2026-12-05), and `dvc exp show` then fails on the vanished path, a known DVC race
    (the extension saw the same class, treeverse/dvc#8158); that poll counts as "not yet", the next one reads
    a settled state. Any other failure of `exp show` still fails the test."""
    result = subprocess.run([DVC, "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        vanished = "No such file or directory" in result.stderr or "does not exist" in result.stderr
        assert vanished and ".dvc/tmp/exps/" in result.stderr, \
            f"dvc exp show --json failed:\n{result.stdout}\n{result.stderr}"
        return False
    show = json.loads(result.stdout)
    # The same race can also end with exit 0 and an experiment row that carries an "error" instead of its
    # "data" (seen once in a full `make test`, 2026-12-05): not yet settled either. The test's assertions
    # after the queue has finished still read every row's data.
    baseline = next(row for row in show if row["rev"] != "workspace")
    if any("data" not in exp["revs"][0] for exp in baseline["experiments"] or []):
        return False
    return all(row["state"] in ("success", "failed") for row in experiments(show))


def processes_inside(root: Path) -> list[str]:
    """Live processes whose working directory is `root` or below it (workers, their daemons, stage commands)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cwd == root or root in cwd.parents:
            found.append(f"{proc.name}: {cmdline}")
    return found


def wait_until(predicate, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_queued_sweep_with_two_workers_runs_both_experiments(tmp_path):
    env = clean_env(tmp_path)
    root = (tmp_path / "repo").resolve()
    make_repo(root, env)
    for x in QUEUED_X:
        run([DVC, "exp", "run", "--queue", "-S", f"x={x}"], root, env)
    assert sorted(row["state"] for row in experiments(exp_show(root, env))) == ["queued", "queued"]

    try:
        # to a file, not a pipe: the worker daemons inherit stdout, and reading a pipe would wait for them to exit
        with open(tmp_path / "queue-start.log", "w+") as log:
            subprocess.run([DVC, "queue", "start", "-j", "2"], cwd=root, env=env, stdout=log, stderr=log, timeout=60)
            log.seek(0)
            started = log.read()
        finished = wait_until(lambda: queue_finished(root, env), timeout=120)
    finally:
        # workers leave on their own 10 s after the queue empties; stop them now, killing any task still running
        subprocess.run([DVC, "queue", "stop", "--kill"], cwd=root, env=env, capture_output=True, timeout=60)
        gone = wait_until(lambda: not processes_inside(root), timeout=30, interval=0.5)

    assert "Started '2' new experiments task queue workers" in started
    rows = experiments(exp_show(root, env))
    assert finished, f"queue did not finish within 120 s: {rows}\n{run([DVC, 'queue', 'status'], root, env)}"
    assert sorted((row["x"], row["y"], row["state"]) for row in rows) == \
        [(x, x * x, "success") for x in QUEUED_X]
    assert len({row["rev"] for row in rows}) == len({row["name"] for row in rows}) == len(QUEUED_X)
    # queued runs happen in copies under .dvc/tmp/exps: the workspace keeps its params and has no metrics
    assert (root / "params.yaml").read_text() == "x: 1\n"
    assert not (root / "metrics.json").exists()
    assert gone, f"processes still running inside the test repo: {processes_inside(root)}"
