"""Fault injection into publishing and disks: `evaluate`'s outputs published as one set (killed, interrupted or
failing half-way, run twice at once, deleted by DVC before a run that fails), any OSError as one error line, an
output folder's path holding a file or a symlink, and a full disk under `prepare`'s memory-mapped arrays."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_helpers import last_line, leftovers, snapshot, stage_env, write_params

from src import atomic, evaluate, prepare
from src.stage import run_stage
from tests.data.datatest_helpers import base_params, synthetic_head, write_nifti

pytestmark = pytest.mark.faults

OUT = "pipeline/evaluate"
KEPT = "pipeline/.evaluate-previous"
BROKEN_PART = "pipeline/evaluate_sim2real/part.json"


def publish_leftovers(root: Path) -> list[str]:
    """`leftovers` and a committed set not yet in place (`.<folder>-ready`, src/atomic.py)."""
    return leftovers(root) + sorted(str(p.relative_to(root)) for p in root.rglob(".*-ready"))


def kept(root: Path) -> dict[str, str]:
    """The kept copy of the last published set, keyed like the outputs."""
    return {k.replace(KEPT, OUT, 1): v for k, v in snapshot(root, KEPT).items()}


def delete_outputs(root: Path) -> None:
    """What DVC does before it runs a stage: every non-persistent output removed."""
    for name in evaluate.OUTPUTS:
        path = root / OUT / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def new_parts(root: Path) -> None:
    """Parts whose assembly differs from the fixture's: another wall time, another example image."""
    part = root / "pipeline/evaluate_sr/part.json"
    tree = json.loads(part.read_text())
    tree["wall_time_s"] += 100.0
    part.write_text(json.dumps(tree, indent=1) + "\n")
    with open(root / "pipeline/evaluate_sr/examples/sr_grid.png", "ab") as f:
        f.write(b"another run")


def break_a_part(root: Path) -> None:
    (root / BROKEN_PART).write_text("{")


def run_evaluate(capsys) -> tuple[int, str]:
    rc = evaluate.main(["--params", "params.yaml"])
    return rc, last_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def new_set(evaluated, tmp_path_factory):
    """The outputs `evaluate` publishes from `new_parts` in one clean run (the set a killed publish must give)."""
    root = tmp_path_factory.mktemp("new_set")
    shutil.copytree(evaluated, root, dirs_exist_ok=True)
    new_parts(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert evaluate.main(["--params", "params.yaml"]) == 0
    finally:
        os.chdir(cwd)
    return snapshot(root, OUT)


@pytest.fixture
def tree(evaluated, tmp_path, monkeypatch):
    """A copy of the finished evaluation as the working directory."""
    root = tmp_path / "w"
    shutil.copytree(evaluated, root)
    monkeypatch.chdir(root)
    assert snapshot(root, OUT) == kept(root) and publish_leftovers(root) == []
    return root


# ------------------------------------------------------------------ evaluate: one set, all or nothing


KILL_AT = textwrap.dedent("""
    import os, shutil, signal, sys
    import src.atomic as atomic

    module, name, nth, after = {module}, {name!r}, {nth}, {after}
    original, calls = getattr(module, name), [0]

    def killed(*args, **kwargs):  # kill -9 of this process at the nth call, before or after it
        calls[0] += 1
        if calls[0] == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, killed)
    from src import evaluate
    sys.exit(evaluate.main(["--params", "params.yaml"]))
""")


def evaluate_killed_at(root: Path, module: str, name: str, nth: int, after: bool) -> subprocess.CompletedProcess:
    code = KILL_AT.format(module=module, name=name, nth=nth, after=after)
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=stage_env(), capture_output=True, text=True,
                          timeout=300)


def test_evaluate_killed_before_its_commit_point_leaves_the_previous_set(tree, capsys):
    """kill -9 while the new set is being staged (at the copy kept for a failed re-run): the outputs are the
    previous set; the staging folder is removed by the next start, here one that then fails."""
    before = snapshot(tree, OUT)
    new_parts(tree)
    done = evaluate_killed_at(tree, "shutil", "copytree", 1, after=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert snapshot(tree, OUT) == before
    assert [p for p in publish_leftovers(tree) if ".evaluate-tmp-" in p], "the killed run left its staging folder"
    break_a_part(tree)
    rc, err = run_evaluate(capsys)
    assert rc == 1 and err.startswith(f"error: evaluate: {BROKEN_PART}"), err
    assert snapshot(tree, OUT) == before == kept(tree)
    assert publish_leftovers(tree) == []


def test_evaluate_killed_between_its_renames_is_rolled_forward_at_the_next_start(tree, new_set, capsys):
    """kill -9 after the commit point, between two renames: the folder holds a mix of two runs and
    `.evaluate-ready` says so; the next start (here one that then fails) puts the whole new set in place."""
    before = snapshot(tree, OUT)
    new_parts(tree)
    done = evaluate_killed_at(tree, "atomic", "replace_dir", 2, after=True)  # examples/, per_slice.csv renamed
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert (tree / "pipeline/.evaluate-ready").is_dir()
    mixed = snapshot(tree, OUT)
    png, metrics = f"{OUT}/examples/sr_grid.png", f"{OUT}/metrics.json"
    assert mixed[png] == new_set[png] != before[png] and mixed[metrics] == before[metrics] != new_set[metrics]
    break_a_part(tree)
    rc, err = run_evaluate(capsys)
    assert rc == 1 and err.startswith(f"error: evaluate: {BROKEN_PART}"), err
    assert snapshot(tree, OUT) == new_set == kept(tree)
    assert publish_leftovers(tree) == []


def test_evaluate_interrupted_between_its_renames_finishes_the_publish(tree, new_set, monkeypatch, capsys):
    """SIGTERM after the commit point, between two renames: the run's own clean-up puts the rest in place."""
    original, calls = atomic.replace_dir, []

    def terminated_after_the_second(tmp, final):
        original(tmp, final)
        calls.append(final)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(atomic, "replace_dir", terminated_after_the_second)
    new_parts(tree)
    rc, err = run_evaluate(capsys)
    assert rc == 143 and "error: evaluate: terminated (SIGTERM)" in err, err
    assert snapshot(tree, OUT) == new_set == kept(tree)
    assert publish_leftovers(tree) == []


def _failing_write(monkeypatch, code: int, name: str = "metrics.json") -> None:
    """Path.write_text fails with `code` (after writing half) for files called `name`."""
    original = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.name == name:
            original(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(code, os.strerror(code), str(self))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "the disk is full"),
    (errno.EROFS, "Read-only file system"),
    (errno.EIO, "Input/output error"),
    (errno.EACCES, "Permission denied"),
], ids=["disk_full", "read_only", "io_error", "permission_denied"])
def test_evaluate_failing_to_write_an_output_is_one_error_line_and_keeps_the_previous_set(tree, monkeypatch, capsys,
                                                                                        code, reason):
    before = snapshot(tree, OUT)
    new_parts(tree)
    _failing_write(monkeypatch, code)
    rc, err = run_evaluate(capsys)
    assert rc == 1, err
    # the file being written when it failed: metrics.json in the staging folder beside pipeline/evaluate
    assert err.startswith("error: evaluate: pipeline/.evaluate-tmp-") and f"metrics.json: {reason}" in err, err
    assert snapshot(tree, OUT) == before == kept(tree)
    assert publish_leftovers(tree) == []


def test_symlink_loop_in_a_part_is_one_error_line(tree, capsys):
    """A real ELOOP, no injection: was a traceback."""
    reliability = tree / "pipeline/evaluate_sr/reliability.json"
    reliability.unlink()
    reliability.symlink_to(reliability.name)
    before = snapshot(tree, OUT)
    rc, err = run_evaluate(capsys)
    assert rc == 1, err
    assert err == f"error: evaluate: pipeline/evaluate_sr/reliability.json: {os.strerror(errno.ELOOP)}", err
    assert snapshot(tree, OUT) == before and publish_leftovers(tree) == []


@pytest.mark.parametrize("failure, code", [("broken_part", 1), ("disk_full", 1), ("ctrl_c", 130)])
def test_failed_rerun_after_dvc_deleted_the_outputs_puts_the_last_set_back(tree, monkeypatch, capsys, failure, code):
    """DVC deletes a stage's outputs before running it, and the `cache: false` ones (metrics.json, headline.json,
    plots/) are in no DVC cache: a failed run puts back the last published set from pipeline/.evaluate-previous."""
    before = snapshot(tree, OUT)
    delete_outputs(tree)
    if failure == "broken_part":
        break_a_part(tree)
    elif failure == "disk_full":
        _failing_write(monkeypatch, errno.ENOSPC, "headline.json")
    else:
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(evaluate.schema, "headline", interrupted)
    rc, err = run_evaluate(capsys)
    assert rc == code, err
    assert {"broken_part": BROKEN_PART, "disk_full": "the disk is full", "ctrl_c": "interrupted"}[failure] in err, err
    assert snapshot(tree, OUT) == before == kept(tree)
    assert publish_leftovers(tree) == []


def test_second_evaluate_fails_at_once_naming_the_lock(tree, capsys):
    code = textwrap.dedent("""
        import time
        from pathlib import Path
        from src.training.lock import output_lock
        with output_lock(Path("pipeline/.evaluate.lock"), "evaluate", Path("pipeline/evaluate")):
            print("locked", flush=True)
            time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=tree, env=stage_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = holder.stdout.readline()
        assert line.strip() == "locked", line
        before = snapshot(tree, OUT)
        new_parts(tree)
        started = time.monotonic()
        rc, err = run_evaluate(capsys)
        assert time.monotonic() - started < 10  # at once: no waiting for the lock, no assembly
        assert rc == 1, err
        assert f"another evaluate (pid {holder.pid}) is writing pipeline/evaluate" in err, err
        assert "(lock: pipeline/.evaluate.lock)" in err, err
        assert snapshot(tree, OUT) == before and publish_leftovers(tree) == []
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert evaluate.main(["--params", "params.yaml"]) == 0  # the lock died with its holder


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling_symlink"])
def test_evaluate_replaces_a_file_or_symlink_at_its_examples_folder(tree, new_set, kind):
    """Odd but valid: whatever sits at an output folder's path is replaced; a symlink's target is left alone."""
    examples = tree / OUT / "examples"
    shutil.rmtree(examples)
    elsewhere = tree / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "note.txt").write_text("a user's folder")
    if kind == "file":
        examples.write_text("not a folder")
    else:
        examples.symlink_to(elsewhere if kind == "symlink" else tree / "missing")
    new_parts(tree)
    assert evaluate.main(["--params", "params.yaml"]) == 0
    assert examples.is_dir() and not examples.is_symlink()
    assert snapshot(tree, OUT) == new_set == kept(tree)
    assert (elsewhere / "note.txt").read_text() == "a user's folder"
    assert publish_leftovers(tree) == []


# ------------------------------------------------------------------ src/atomic.py and src/stage.py on their own


def _stage_writing(out: Path, content: str):
    def recipe(params):
        with atomic.staged_dir(out) as staging:
            (staging / "part.json").write_text(content)
        return {}
    return recipe


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling_symlink", "stale_old_file"])
def test_staged_dir_replaces_a_file_or_symlink_at_its_path(workdir, capsys, kind):
    """Was: the new folder swapped in, then `.<name>-old` (a file) could not be removed: exit with a traceback
    and the file left behind."""
    out = workdir / "pipeline/evaluate_sr"
    out.parent.mkdir(parents=True)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "part.json").write_text("a user's folder")
    if kind == "file":
        out.write_text("a file")
    elif kind == "symlink":
        out.symlink_to(elsewhere)
    elif kind == "dangling_symlink":
        out.symlink_to(workdir / "missing")
    else:
        out.mkdir()
        (out / "part.json").write_text("previous")
        (out.parent / ".evaluate_sr-old").write_text("left by a run of older code")
    assert run_stage("evaluate_sr", "test", _stage_writing(out, "new"), [], reads_params=False) == 0, \
        capsys.readouterr().err
    assert out.is_dir() and not out.is_symlink() and (out / "part.json").read_text() == "new"
    assert (elsewhere / "part.json").read_text() == "a user's folder"
    assert sorted(p.name for p in out.parent.iterdir()) == ["evaluate_sr"]


def test_staged_dir_failing_at_its_second_rename_puts_the_file_back(workdir, monkeypatch, capsys):
    out = workdir / "pipeline/evaluate_sr"
    out.parent.mkdir(parents=True)
    out.write_text("a file")
    original = Path.rename

    def rename(self, target):
        if self.name.startswith(".evaluate_sr-tmp-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self), None, str(target))  # (4th: winerror)
        return original(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    assert run_stage("evaluate_sr", "test", _stage_writing(out, "new"), [], reads_params=False) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: evaluate_sr: ") and ".evaluate_sr-tmp-" in err, err  # both paths of the rename
    assert err.endswith(f" -> {out}: Input/output error"), err
    assert out.read_text() == "a file"
    assert sorted(p.name for p in out.parent.iterdir()) == ["evaluate_sr"]


def test_any_oserror_is_one_line_naming_both_paths_of_a_rename(workdir, capsys):
    def recipe(params):
        os.rename("missing.json", "there.json")

    assert run_stage("evaluate", "test", recipe, [], reads_params=False) == 1
    err = last_line(capsys.readouterr().err)
    assert err == "error: evaluate: missing.json -> there.json: No such file or directory", err


# ------------------------------------------------------------------ prepare on a full disk


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A user folder with one head and the outputs of a good `prepare` run on it."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "user/images").mkdir(parents=True)
    write_nifti(root / "user/images/head0.nii.gz", synthetic_head((40, 44, 36))[0])
    cwd = os.getcwd()
    os.chdir(root)
    try:
        raw = base_params()
        raw["data"]["workers"] = 1
        assert prepare.main(["--params", str(write_params(root, raw))]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("target", ["train-images.npy", "hr.npy"], ids=["scratch_parts", "sr_output"])
def test_prepare_on_a_full_disk_fails_with_one_line_instead_of_sigbus(prepared, tmp_path, monkeypatch, capsys,
                                                                      target):
    """The memory-mapped files (the scratch parts, the SR arrays) were sparse: on a full disk the page faults that
    filled them killed prepare with SIGBUS. Their space is now reserved first; ENOSPC there is an error line."""
    root = tmp_path / "w"
    shutil.copytree(prepared, root)
    monkeypatch.chdir(root)
    outputs = ("data/prepared", "pipeline/prepare")
    before = snapshot(root, *outputs)
    reserved = []

    def posix_fallocate(fd, offset, length):
        name = os.readlink(f"/proc/self/fd/{fd}")
        reserved.append(name)
        if Path(name).name == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", posix_fallocate)
    rc = prepare.main(["--params", "params.yaml"])
    err = last_line(capsys.readouterr().err)
    assert rc == 1, err
    assert err.startswith("error: prepare: ") and f"{target}: the disk is full" in err and "MiB" in err, err
    assert any(Path(name).name == target for name in reserved)
    assert snapshot(root, *outputs) == before
    assert leftovers(root) == [] and not list(root.glob("data/.prepare-scratch*"))


def test_reserved_memmap_writes_what_open_memmap_writes_with_its_blocks_allocated(tmp_path):
    data = np.arange(3 * 1 * 64 * 64, dtype=np.float32).reshape(3, 1, 64, 64)
    sparse = np.lib.format.open_memmap(tmp_path / "sparse.npy", "w+", np.float32, data.shape)
    sparse[:] = data
    sparse.flush()
    del sparse
    reserved = atomic.reserved_memmap(tmp_path / "reserved.npy", np.float32, data.shape)
    assert reserved.shape == data.shape and reserved.dtype == np.float32
    stat = os.stat(tmp_path / "reserved.npy")
    assert stat.st_blocks * 512 >= stat.st_size  # allocated before a single page was written
    reserved[:] = data
    reserved.flush()
    del reserved
    assert (tmp_path / "reserved.npy").read_bytes() == (tmp_path / "sparse.npy").read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / "reserved.npy"), data)
