"""Write a stage's outputs completely or not at all: a folder staged next to its target and swapped in, a file
written beside its target and renamed over it, a set of outputs published together, and memory-mapped arrays
whose disk space is reserved before they are filled.

A staging folder is `.<name>-tmp-<pid>-<random>` beside its target. A kill -9 leaves it
behind, so `sweep_staging` (called before every new staging folder, and by stages at their
start) removes those whose process is gone, and finishes a swap cut between its two renames.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exists(path: Path) -> bool:
    """Whether anything is at `path`: a folder, a file, or a symlink (even a dangling one; never followed)."""
    return os.path.lexists(path)


def _remove(path: Path) -> None:
    """Remove whatever is at `path`: a folder with its contents, a file, or a symlink (the link, never its
    target's contents)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif _exists(path):
        path.unlink()


def sweep_staging(final: Path) -> None:
    """Remove what killed writers of `final` left beside it: staging folders of processes that are gone (and of
    older code, without a pid), `.<name>-old` (put back as `final` if the swap died before `final` was renamed in)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(final.name)}-tmp-(?:(\d+)-)?")
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not (match.group(1) and _running(int(match.group(1)))):
            log.warning("removing %s, left by an interrupted run", entry)
            _remove(entry)
    old = final.with_name(f".{final.name}-old")
    if _exists(old):
        if _exists(final):
            _remove(old)
        else:
            log.warning("putting back %s from %s (a swap was interrupted)", final, old)
            old.rename(final)


def staging_dir(final: Path) -> Path:
    """An empty folder next to `final` (same file system, so the swap is a rename); stale ones are swept first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_staging(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-tmp-{os.getpid()}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700 folders
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished `tmp` (a folder, or a file) to `final`, replacing whatever is there: a folder, a file or
    a symlink (the link itself is replaced; the folder it points to is left alone).

    Each rename is atomic, so readers see the old output or the new one, never a half-written one; if the
    second rename fails the previous output is put back. A file replacing a file (or symlink) is one rename.
    """
    tmp, final = Path(tmp), Path(final)
    if not tmp.is_dir() and not (final.is_dir() and not final.is_symlink()):
        os.replace(tmp, final)
        return
    if _exists(final) and not (final.is_dir() and not final.is_symlink()):
        log.warning("%s is a %s, not a folder: replacing it", final, "symlink" if final.is_symlink() else "file")
    old = final.with_name(f".{final.name}-old")
    _remove(old)
    if _exists(final):
        final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:  # an OSError, or a Ctrl-C/SIGTERM between the renames
        if _exists(old) and not _exists(final):
            old.rename(final)
        raise
    _remove(old)


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a staging folder; it replaces `final` when the block succeeds and is removed when it fails."""
    tmp = staging_dir(final)
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: Path, text: str) -> None:
    """Write `text` to a hidden file beside `path` and rename it over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: object) -> None:
    """`obj` as indented JSON, written atomically (see `write_text`)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


# ------------------------------------------------------------------ a set of outputs published together
#
# A stage whose outputs are several paths side by side in one folder (`evaluate`: examples/, per_slice.csv,
# plots/*.json, headline.json, metrics.json) cannot swap them in with one rename: the folder also holds what is
# not the stage's (DVC's .gitignore), and DVC lists each path as its own output. So the set is published in
# two phases with one atomic commit point between them, a journal in the file system:
#
#   1. every output is written into a staging folder `.<folder>-tmp-<pid>-*` beside `folder` (under new/), and a
#      copy of the set is made there (under keep/);
#   2. commit: that staging folder is renamed to `.<folder>-ready`. From here on the new set is complete;
#   3. each output is renamed from `.<folder>-ready/new/` over its path in `folder`, keep/ replaces
#      `.<folder>-previous` (the copy kept for a failed re-run: see `keeping_previous`), and the ready folder
#      is removed. After the commit point only renames and deletions happen, so a full disk cannot stop it.
#
# A run killed before the commit point leaves only a staging folder, swept at the next start; the outputs are
# the previous set. A run killed after it leaves `.<folder>-ready`, and the next start (or this run's own
# clean-up) rolls it forward: every step of phase 3 checks what is still to be done, so it can be repeated.
# Rolling forward rather than back because the new set is complete and newer, and because under DVC the
# previous set is gone anyway (DVC deletes a stage's outputs before running it). The caller must hold the
# stage's lock (src/training/lock.py): two publishers would share `.<folder>-ready`.


def previous_set(folder: Path) -> Path:
    """Where the copy of the last set published into `folder` is kept (`.<folder>-previous` beside it)."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}-previous")


def _ready(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}-ready")


def _finish_publish(folder: Path, names: tuple[str, ...]) -> None:
    """Phase 3 of a committed publish (a no-op when none is pending); safe to repeat after any interruption."""
    ready = _ready(folder)
    if not ready.is_dir():
        return
    for name in names:
        new = ready / "new" / name
        if _exists(new):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            replace_dir(new, folder / name)
    if (ready / "keep").is_dir():
        replace_dir(ready / "keep", previous_set(folder))
    shutil.rmtree(ready)


def _recover(folder: Path, names: tuple[str, ...]) -> None:
    """Clear what interrupted publishes left: dead staging folders, swaps cut between their renames, and a
    committed set not yet in place (rolled forward)."""
    for path in (folder, previous_set(folder), *(folder / name for name in names)):
        sweep_staging(path)
    if _ready(folder).is_dir():
        log.warning("finishing the publish of %s that an interrupted run committed", folder)
        _finish_publish(folder, names)


@contextmanager
def staged_set(folder: Path, names: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty staging folder; the block writes each of `names` (paths relative to `folder`: files or
    folders) into it. When the block succeeds they replace those paths in `folder` all together, and a copy
    is kept as `previous_set(folder)`; when it fails nothing in `folder` changes. Hold the stage's lock."""
    folder = Path(folder)
    _recover(folder, names)
    tmp = staging_dir(folder)
    try:
        (tmp / "new").mkdir()
        yield tmp / "new"
        missing = [name for name in names if not _exists(tmp / "new" / name)]
        if missing:
            raise RuntimeError(f"the outputs {missing} of {folder} were not written")  # a bug in the stage
        shutil.copytree(tmp / "new", tmp / "keep", symlinks=True)
        tmp.rename(_ready(folder))  # the commit point
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    _finish_publish(folder, names)


def _copy_back(kept: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kept.is_dir():
        with staged_dir(path) as staging:
            shutil.copytree(kept, staging, symlinks=True, dirs_exist_ok=True)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-tmp-{os.getpid()}-", dir=path.parent)  # swept if killed
    os.close(fd)
    try:
        shutil.copy2(kept, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def keeping_previous(folder: Path, names: tuple[str, ...]) -> Iterator[None]:
    """Run a stage that publishes `names` into `folder` with `staged_set`, so that a failed run loses nothing.

    On entry, what an interrupted publish left is cleared (a committed set is rolled forward). If the block
    fails (an error, Ctrl-C, SIGTERM), every one of `names` missing from `folder` is put back from the copy of
    the last published set, `previous_set(folder)`: DVC deletes a stage's outputs before running it, and
    outputs with `cache: false` are in no DVC cache to check out again. Hold the stage's lock.
    """
    folder = Path(folder)
    _recover(folder, names)
    try:
        yield
    except BaseException:
        _put_back(folder, names)
        raise


def _put_back(folder: Path, names: tuple[str, ...]) -> None:
    kept = previous_set(folder)
    try:
        if _ready(folder).is_dir():  # the failure came after the commit point: the new set is complete
            _finish_publish(folder, names)
            return
        for name in names:
            if not _exists(folder / name) and _exists(kept / name):
                _copy_back(kept / name, folder / name)
                log.warning("put back %s from %s (the last published outputs)", folder / name, kept)
    except OSError as err:  # e.g. the disk is still full: the copy stays where it is, for the next run or by hand
        log.warning("could not put back the outputs of %s from %s (%s); copy them back by hand: cp -a %s/. %s/",
                    folder, kept, err, kept, folder)


# ------------------------------------------------------------------ memory-mapped outputs


def reserved_memmap(path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A new .npy file at `path` (as `np.lib.format.open_memmap(path, "w+", dtype, shape)` writes it), memory-mapped
    for writing, with its disk blocks allocated before it is mapped.

    open_memmap makes a sparse file whose blocks are allocated by page faults as the array is filled: on a
    full disk the kernel then kills the process with SIGBUS, with no clean-up and no message. posix_fallocate
    reserves every block up front and fails with an OSError (ENOSPC) naming `path` instead. (On copy-on-write file
    systems, btrfs and ZFS, a reservation is no guarantee: there writing without mmap would be the only sure way.)
    """
    path, dtype = Path(path), np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    reserve = getattr(os, "posix_fallocate", None)  # not on macOS
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        f.flush()
        try:
            if reserve is None:
                f.truncate(offset + nbytes)  # a sparse file, as open_memmap makes
            else:
                reserve(f.fileno(), 0, offset + nbytes)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err.errno, f"{err.strerror}, reserving {(offset + nbytes) / 2**20:.1f} MiB for it",
                              str(path)) from None
            f.truncate(offset + nbytes)  # a file system that cannot reserve space: sparse, as above
    return np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape))
